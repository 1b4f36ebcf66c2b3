package wire

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/lab/labtest"
)

// relayOnLoopback opens a RelayBind on 127.0.0.1 serving the office "hq" (box's key) and
// runs its receive function as WireGuard would; what reaches WireGuard goes to the channel.
func relayOnLoopback(t *testing.T, box wgtypes.Key, log io.Writer) (*RelayBind, netip.AddrPort, chan []byte) {
	t.Helper()
	rb, err := NewRelayBind(RelayOptions{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Private: mustKey(t), Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := rb.SetOffices(map[wgtypes.Key]Office{box.PublicKey(): {Name: "hq"}}); err != nil {
		t.Fatal(err)
	}
	fns, port, err := rb.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rb.Close() })
	passed := make(chan []byte, 64)
	go func() {
		bufs, sizes, eps := [][]byte{make([]byte, 2048)}, make([]int, 1), make([]conn.Endpoint, 1)
		for {
			n, err := fns[0](bufs, sizes, eps)
			if err != nil {
				return
			}
			if n == 1 {
				select {
				case passed <- append([]byte(nil), bufs[0][:sizes[0]]...):
				default:
				}
			}
		}
	}()
	return rb, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), passed
}

// fakeLine is a box line on loopback sending hand-made probes.
type fakeLine struct {
	t    *testing.T
	c    *net.UDPConn
	to   netip.AddrPort
	key  probeKey
	from wgtypes.Key
	line uint8
}

func newFakeLine(t *testing.T, to netip.AddrPort, box wgtypes.Key, relayPub wgtypes.Key, line uint8) *fakeLine {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	k, err := deriveKey(box, relayPub)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeLine{t: t, c: c, to: to, key: k, from: box.PublicKey(), line: line}
}

func (f *fakeLine) addr() netip.AddrPort { return f.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *fakeLine) send(seq uint64, stamp time.Time, flags byte) int {
	f.t.Helper()
	p := probe{kind: kindRequest, flags: flags, line: f.line, seq: seq, stamp: stamp.UnixNano(), sender: f.from}
	var buf [probeSize]byte
	msg := p.marshal(buf[:], &f.key)
	if _, err := f.c.WriteToUDPAddrPort(msg, f.to); err != nil {
		f.t.Fatal(err)
	}
	return len(msg)
}

// next reads the next datagram (a probe reply or a WireGuard packet the relay sent).
func (f *fakeLine) next() []byte {
	f.t.Helper()
	buf := make([]byte, 2048)
	f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := f.c.Read(buf)
	if err != nil {
		f.t.Fatalf("line %d: nothing from the relay: %v", f.line, err)
	}
	return buf[:n]
}

// The relay answers only authenticated, fresh probes, with a reply no bigger than the
// request: a forged, replayed, stale or unknown-key probe, or garbage, gets no answer, creates
// no path, never reaches WireGuard, and only counts. Loopback UDP keeps order, so "the first
// reply is the valid probe's" proves the ones before it went unanswered.
func TestRelayAnswersOnlyAuthenticProbes(t *testing.T) {
	box := mustKey(t)
	var log labtest.LogBuffer
	rb, at, passed := relayOnLoopback(t, box, &log)
	good := newFakeLine(t, at, box, rb.PublicKey(), 0)
	forged := &fakeLine{t: t, c: good.c, to: at, from: box.PublicKey()}
	forged.key, _ = deriveKey(mustKey(t), rb.PublicKey()) // claims hq's key, signs with another
	stranger := newFakeLine(t, at, mustKey(t), rb.PublicKey(), 0)
	stranger.c = good.c

	now := time.Now()
	forged.send(uint64(now.UnixNano()), now, 0)
	stranger.send(uint64(now.UnixNano()), now, 0)
	if _, err := good.c.WriteToUDPAddrPort([]byte{probeMagic, 1, 2}, at); err != nil {
		t.Fatal(err)
	}
	sent := good.send(100, now, 0)
	reply := good.next()
	if len(reply) > sent {
		t.Fatalf("reply of %d bytes to a request of %d", len(reply), sent)
	}
	p, err := parse(reply)
	if err != nil || p.kind != kindReply || p.seq != 100 || p.sender != rb.PublicKey() || !verify(reply, &good.key) {
		t.Fatalf("first reply %+v (%v): want the authenticated reply to seq 100", p, err)
	}
	if got := rb.Rejected(); got != 3 {
		t.Fatalf("rejected %d probes, want 3 (forged, unknown key, garbage)", got)
	}
	paths := rb.Paths("hq")
	if len(paths) != 1 || paths[0].Addr != good.addr() || paths[0].Line != 0 {
		t.Fatalf("paths %+v, want one: line 0 at %s", paths, good.addr())
	}

	good.send(100, now, 0)                     // replayed
	good.send(99, now, 0)                      // older
	good.send(101, now.Add(-2*time.Minute), 0) // stale
	good.send(102, now.Add(2*time.Minute), 0)  // from the future
	forged.send(103, now, 0)                   // forged with a fresh seq
	good.send(104, time.Now(), 0)
	if p, _ := parse(good.next()); p.seq != 104 {
		t.Fatalf("answered seq %d before seq 104", p.seq)
	}
	if got := rb.Rejected(); got != 8 {
		t.Fatalf("rejected %d probes, want 8", got)
	}
	if n := len(rb.Paths("hq")); n != 1 {
		t.Fatalf("%d paths after rejected probes, want 1", n)
	}
	if n := strings.Count(log.String(), "probes rejected"); n != 1 {
		t.Fatalf("%d log lines about 8 rejected probes, want 1 a minute:\n%s", n, log.String())
	}

	// A WireGuard datagram goes to WireGuard; no probe ever did.
	wg := []byte{4, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
	if _, err := good.c.WriteToUDPAddrPort(wg, at); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-passed:
		if string(got) != string(wg) {
			t.Fatalf("WireGuard got %x, want the WireGuard datagram %x", got, wg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the WireGuard datagram did not reach WireGuard")
	}
}

// Send duplicates to an office's other fresh path while its latest probe asks for it, and
// stops when a probe says no more.
func TestRelaySendDuplicates(t *testing.T) {
	box := mustKey(t)
	rb, at, _ := relayOnLoopback(t, box, io.Discard)
	l0 := newFakeLine(t, at, box, rb.PublicKey(), 0)
	l1 := newFakeLine(t, at, box, rb.PublicKey(), 1)
	seq := uint64(time.Now().UnixNano())
	probe := func(l *fakeLine, flags byte) {
		seq++
		l.send(seq, time.Now(), flags)
		if p, _ := parse(l.next()); p.seq != seq {
			t.Fatalf("line %d: reply to seq %d, want %d", l.line, p.seq, seq)
		}
	}
	probe(l0, flagDuplicate)
	probe(l1, flagDuplicate)
	ep := &conn.StdNetEndpoint{AddrPort: l0.addr()}
	if err := rb.Send([][]byte{[]byte("voice-1")}, ep); err != nil {
		t.Fatal(err)
	}
	if a, b := string(l0.next()), string(l1.next()); a != "voice-1" || b != "voice-1" {
		t.Fatalf("lines got %q and %q, want the packet on both", a, b)
	}
	if ps := rb.Paths("hq"); len(ps) != 2 || !ps[0].Duplicate || ps[1].Addr != l1.addr() {
		t.Fatalf("paths %+v", ps)
	}

	probe(l1, 0) // duplication off
	if err := rb.Send([][]byte{[]byte("voice-2")}, ep); err != nil {
		t.Fatal(err)
	}
	if err := rb.Send([][]byte{[]byte("voice-3")}, &conn.StdNetEndpoint{AddrPort: l1.addr()}); err != nil {
		t.Fatal(err)
	}
	if a, b := string(l0.next()), string(l1.next()); a != "voice-2" || b != "voice-3" {
		t.Fatalf("lines got %q and %q, want one packet each, no copies", a, b)
	}
}

// An office's paths are bounded: a box with more lines than that keeps its 8 latest.
func TestRelayPathsBounded(t *testing.T) {
	box := mustKey(t)
	rb, at, _ := relayOnLoopback(t, box, io.Discard)
	seq := uint64(1)
	for id := range uint8(maxPaths + 3) {
		l := newFakeLine(t, at, box, rb.PublicKey(), id)
		seq++
		l.send(seq, time.Now(), 0)
		l.next()
	}
	ps := rb.Paths("hq")
	if len(ps) != maxPaths || ps[0].Line != 3 {
		t.Fatalf("%d paths from line %d, want %d from line 3", len(ps), ps[0].Line, maxPaths)
	}
}
