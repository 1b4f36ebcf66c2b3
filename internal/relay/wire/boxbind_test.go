package wire

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/lab/labtest"
)

// The box believes only the relay: replies signed with another key (or by someone claiming
// the relay's key) never make a line reachable and only count; the relay's own replies do,
// with an RTT. Its requests carry the duplicate flag once duplication is on. One line on lo
// (root: SO_PRIORITY past 6) and a hand-made relay on 127.0.0.1.
func TestBoxBelievesOnlyTheRelay(t *testing.T) {
	labtest.RequireRoot(t)
	boxKey, relayKey := mustKey(t), mustKey(t)
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	good, _ := deriveKey(relayKey, boxKey.PublicKey())
	forged, _ := deriveKey(mustKey(t), boxKey.PublicKey())
	var honest, sawDup atomic.Bool
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := relay.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p, err := parse(buf[:n])
			if err != nil || p.kind != kindRequest || p.sender != boxKey.PublicKey() || !verify(buf[:n], &good) {
				continue
			}
			if p.flags&flagDuplicate != 0 {
				sawDup.Store(true)
			}
			p.kind, p.sender, p.epoch = kindReply, relayKey.PublicKey(), 7
			k := &forged
			if honest.Load() {
				k = &good
			}
			var out [probeSize]byte
			_, _ = relay.WriteToUDPAddrPort(p.marshal(out[:], k), from)
		}
	}()
	at := relay.LocalAddr().(*net.UDPAddr).AddrPort()
	bb, err := NewBoxBind(BoxOptions{
		Lines:   []Line{{Name: "loop", Interface: "lo"}},
		Private: boxKey, RelayPublic: relayKey.PublicKey(),
		Relay:      func() netip.AddrPort { return at },
		ProbeEvery: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	fns, _, err := bb.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	go func() {
		bufs, sizes, eps := [][]byte{make([]byte, 2048)}, make([]int, 1), make([]conn.Endpoint, 1)
		for {
			if _, err := fns[0](bufs, sizes, eps); err != nil {
				return
			}
		}
	}()

	labtest.WaitFor(t, "forged replies to be rejected", 5*time.Second, func() bool { return bb.Rejected() >= 3 })
	if st := bb.Stats()[0]; st.Reachable || st.ProbesAnswered != 0 || bb.Reachable() {
		t.Fatalf("stats %+v after forged replies only: want unreachable", st)
	}
	honest.Store(true)
	labtest.WaitFor(t, "the relay's replies to make the line reachable", 5*time.Second, bb.Reachable)
	if st := bb.Stats()[0]; st.RTT <= 0 || st.ProbesAnswered == 0 || !st.Current || !st.Open {
		t.Fatalf("stats %+v: want answered probes with an RTT", st)
	}
	bb.SetDuplicate(true)
	labtest.WaitFor(t, "a request with the duplicate flag", 5*time.Second, sawDup.Load)
}

// openRelay runs a RelayBind serving box on 127.0.0.1:port (0: any), its receive function
// drained as WireGuard would.
func openRelay(t *testing.T, key, box wgtypes.Key, port uint16) (*RelayBind, uint16) {
	t.Helper()
	rb, err := NewRelayBind(RelayOptions{Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Private: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := rb.SetOffices(map[wgtypes.Key]Office{box.PublicKey(): {Name: "hq"}}); err != nil {
		t.Fatal(err)
	}
	fns, got, err := rb.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rb.Close() })
	go drain(fns[0])
	return rb, got
}

func drain(fn conn.ReceiveFunc) {
	bufs, sizes, eps := [][]byte{make([]byte, 2048)}, make([]int, 1), make([]conn.Endpoint, 1)
	for {
		if _, err := fn(bufs, sizes, eps); err != nil {
			return
		}
	}
}

// A relay that restarts (a new RelayBind on the same address and key) is noticed once, from
// its new epoch: the first epoch the box sees is no restart, and neither is a forged reply
// nor a validly signed one that answers no probe the box has outstanding (a replay from
// before the restart). One line on lo (root: SO_PRIORITY past 6).
func TestBoxNoticesRelayRestart(t *testing.T) {
	labtest.RequireRoot(t)
	boxKey, relayKey := mustKey(t), mustKey(t)
	rb, port := openRelay(t, relayKey, boxKey, 0)
	at := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	var restarts atomic.Int32
	bb, err := NewBoxBind(BoxOptions{
		Lines:   []Line{{Name: "loop", Interface: "lo"}},
		Private: boxKey, RelayPublic: relayKey.PublicKey(),
		Relay:          func() netip.AddrPort { return at },
		ProbeEvery:     50 * time.Millisecond,
		RelayRestarted: func() { restarts.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	fns, boxPort, err := bb.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	go drain(fns[0])
	answered := func(n uint64) func() bool { return func() bool { return bb.Stats()[0].ProbesAnswered >= n } }
	labtest.WaitFor(t, "the relay to answer 3 probes", 5*time.Second, answered(3))
	if n := restarts.Load(); n != 0 {
		t.Fatalf("%d restarts told before any: the first epoch is no change", n)
	}

	// Someone else's replies with another epoch: one validly signed (the key is the
	// office's, as a captured reply would be) for a probe long answered, then a forged one.
	// Loopback keeps order and one goroutine reads them: once the forged one is rejected,
	// both were taken and the epoch must be the relay's still.
	attacker, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { attacker.Close() })
	good, _ := deriveKey(relayKey, boxKey.PublicKey())
	forged, _ := deriveKey(mustKey(t), boxKey.PublicKey())
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), boxPort)
	other := rb.epoch ^ 0x5a5a5a
	for _, k := range []*probeKey{&good, &forged} {
		p := probe{kind: kindReply, seq: 1, stamp: 1, sender: relayKey.PublicKey(), epoch: other}
		var out [probeSize]byte
		if _, err := attacker.WriteToUDPAddrPort(p.marshal(out[:], k), to); err != nil {
			t.Fatal(err)
		}
	}
	labtest.WaitFor(t, "the forged reply to be rejected", 5*time.Second, func() bool { return bb.Rejected() >= 1 })
	bb.epochMu.Lock()
	epoch := bb.epoch
	bb.epochMu.Unlock()
	if epoch != rb.epoch || restarts.Load() != 0 {
		t.Fatalf("after a replayed and a forged reply: epoch %#x (relay's %#x), %d restarts told; want the relay's, none",
			epoch, rb.epoch, restarts.Load())
	}

	// The relay restarts: same key, same address, another epoch.
	was := bb.Stats()[0].ProbesAnswered
	rb.Close()
	rb2, _ := openRelay(t, relayKey, boxKey, port)
	if rb2.epoch == rb.epoch {
		t.Fatalf("the restarted relay drew the same epoch %#x (1 in 2^24)", rb.epoch)
	}
	labtest.WaitFor(t, "the relay's restart to be told", 5*time.Second, func() bool { return restarts.Load() >= 1 })
	labtest.WaitFor(t, "the restarted relay to answer 5 more probes", 5*time.Second, answered(was+5))
	if n := restarts.Load(); n != 1 {
		t.Fatalf("one restart told %d times", n)
	}
}
