package wire

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// The tunnel lab: namespace box with two veth lines l1 (10.77.1.2) and l2 (10.77.2.2) to a
// router rt, and the relay rl (10.77.9.2) behind it. wireguard-go runs on TUN on both ends
// with the binds under test; the tunnel is 10.254.77.0/30.
const (
	tlRelay     = "10.77.9.2"
	tlRelayPort = 51877
	tlTunBox    = "10.254.77.2"
	tlTunRelay  = "10.254.77.1"
	tlEchoPort  = 7077
)

type tunnelLab struct {
	t     *testing.T
	l     *lab.Lab // attached to the test's namespaces, which labtest.Netns removes
	rt    string   // the router namespace's full name
	box   *BoxBind
	relay *RelayBind
	cli   *net.UDPConn // in box, to the relay's echo server across the tunnel
	log   labtest.LogBuffer

	mu      sync.Mutex
	atRelay map[uint32]bool // stream seqs the relay's echo server got
}

func (tl *tunnelLab) run(host string, args ...string) {
	tl.t.Helper()
	if _, err := tl.l.Run(host, args...); err != nil {
		tl.t.Fatal(err)
	}
}

func (tl *tunnelLab) ip(host, script string) {
	tl.t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
		tl.run(host, append([]string{"ip"}, strings.Fields(line)...)...)
	}
}

// addLine makes box's veth line n (1 or 2) to the router, with its default route.
func (tl *tunnelLab) addLine(n int) {
	tl.ip("box", fmt.Sprintf(`link add l%[1]d type veth peer name b%[1]d netns %[2]s
addr add 10.77.%[1]d.2/24 dev l%[1]d
link set l%[1]d up
route replace default via 10.77.%[1]d.1 dev l%[1]d metric %[1]d00`, n, tl.rt))
	tl.ip("rt", fmt.Sprintf("addr add 10.77.%[1]d.1/24 dev b%[1]d\nlink set b%[1]d up", n))
}

func newTunnelLab(t *testing.T) *tunnelLab {
	labtest.RequireRoot(t, "nft")
	tl := &tunnelLab{t: t, atRelay: map[uint32]bool{}}
	for _, h := range []string{"box", "rt", "rl"} {
		name, _ := labtest.Netns(t, h)
		if h == "rt" {
			tl.rt = name
		}
	}
	tl.l = lab.Attach(lab.Unique(t))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("binds' log:\n%s", tl.log.String())
		}
	})
	rl := tl.l.NS("rl")
	tl.ip("rt", "link add r0 type veth peer name eth0 netns "+rl+"\naddr add 10.77.9.1/24 dev r0\nlink set r0 up")
	tl.run("rt", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	tl.ip("rl", "link set lo up\naddr add "+tlRelay+"/24 dev eth0\nlink set eth0 up\nroute add default via 10.77.9.1")
	tl.ip("box", "link set lo up")
	tl.addLine(1)
	tl.addLine(2)

	boxKey, relayKey := mustKey(t), mustKey(t)
	relayAt := netip.AddrPortFrom(netip.MustParseAddr(tlRelay), tlRelayPort)
	logger := device.NewLogger(device.LogLevelSilent, "")
	var boxTun, relayTun tun.Device
	if err := tl.l.Do("box", func() (err error) {
		if boxTun, err = tun.CreateTUN("wgb", 1420); err != nil {
			return err
		}
		tl.box, err = NewBoxBind(BoxOptions{
			Lines:   []Line{{Name: "fttc", Interface: "l1"}, {Name: "lte", Interface: "l2"}},
			Private: boxKey, RelayPublic: relayKey.PublicKey(),
			Relay:      func() netip.AddrPort { return relayAt },
			ProbeEvery: 100 * time.Millisecond, StandbyProbeEvery: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&tl.log, nil)),
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := tl.l.Do("rl", func() (err error) {
		if relayTun, err = tun.CreateTUN("wgr", 1420); err != nil {
			return err
		}
		tl.relay, err = NewRelayBind(RelayOptions{Listen: netip.AddrPortFrom(netip.IPv4Unspecified(), tlRelayPort), Private: relayKey, Log: slog.New(slog.NewTextHandler(&tl.log, nil))})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := tl.relay.SetOffices(map[wgtypes.Key]Office{boxKey.PublicKey(): {Name: "hq"}}); err != nil {
		t.Fatal(err)
	}
	// The relay first, listening and configured before the box's device exists: the box's
	// first handshake initiation (sent as soon as its peer is set) must find it, not wait out
	// WireGuard's 5 s retry.
	hexKey := func(k wgtypes.Key) string { return hex.EncodeToString(k[:]) }
	relayDev := device.NewDevice(relayTun, tl.relay, logger)
	t.Cleanup(relayDev.Close)
	if err := relayDev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nallowed_ip=%s/32\n",
		hexKey(relayKey), tlRelayPort, hexKey(boxKey.PublicKey()), tlTunBox)); err != nil {
		t.Fatal(err)
	}
	if err := relayDev.Up(); err != nil {
		t.Fatal(err)
	}
	boxDev := device.NewDevice(boxTun, tl.box, logger)
	t.Cleanup(boxDev.Close)
	if err := boxDev.IpcSet(fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\nallowed_ip=%s/32\npersistent_keepalive_interval=1\n",
		hexKey(boxKey), hexKey(relayKey.PublicKey()), relayAt, tlTunRelay)); err != nil {
		t.Fatal(err)
	}
	if err := boxDev.Up(); err != nil {
		t.Fatal(err)
	}
	tl.ip("box", "addr add "+tlTunBox+"/30 dev wgb\nlink set wgb up")
	tl.ip("rl", "addr add "+tlTunRelay+"/30 dev wgr\nlink set wgr up")

	srv, err := tl.l.ListenUDP("rl", fmt.Sprintf("%s:%d", tlTunRelay, tlEchoPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go tl.echo(srv)
	if tl.cli, err = tl.l.DialUDP("box", "", fmt.Sprintf("%s:%d", tlTunRelay, tlEchoPort)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.cli.Close() })
	return tl
}

// echo sends every datagram back, noting its seq (box to relay).
func (tl *tunnelLab) echo(srv *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n >= 4 {
			tl.mu.Lock()
			tl.atRelay[binary.BigEndian.Uint32(buf)] = true
			tl.mu.Unlock()
		}
		_, _ = srv.WriteToUDPAddrPort(buf[:n], from)
	}
}

func (tl *tunnelLab) gotAtRelay(seq uint32) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.atRelay[seq]
}

// ping sends seq across the tunnel and says whether its echo came back within 3 s.
func (tl *tunnelLab) ping(seq uint32) bool {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], seq)
	if _, err := tl.cli.Write(b[:]); err != nil {
		return false
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		tl.cli.SetReadDeadline(deadline)
		var r [64]byte
		n, err := tl.cli.Read(r[:])
		if err != nil {
			return false
		}
		if n == 4 && binary.BigEndian.Uint32(r[:]) == seq {
			return true
		}
	}
}

func (tl *tunnelLab) waitReachable(line int, want bool) LineStats {
	tl.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := tl.box.Stats()[line]
		if st.Reachable == want {
			return st
		}
		if time.Now().After(deadline) {
			tl.t.Fatalf("line %d is not reachable=%v after 10 s: %+v (relay rejected %d probes, paths %+v)", line, want, tl.box.Stats(), tl.relay.Rejected(), tl.relay.Paths("hq"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The tunnel moves between lines at once: with the current line's interface down, SetLine
// to the other one carries the next packet out of it (counters and the echo say so), the
// dead line shows unreachable, and a line whose interface is deleted and made again gets a
// new socket and carries the tunnel again. The relay sees each line from its own address.
func TestTunnelMovesBetweenLines(t *testing.T) {
	tl := newTunnelLab(t)
	// Every outer packet leaves its line as voice: skb priority 1:10 (the shaper's class) and
	// DSCP EF. Counted by the box's kernel as they leave.
	rules := t.TempDir() + "/voice.nft"
	if err := os.WriteFile(rules, []byte(fmt.Sprintf(`table inet voicechk {
 chain out {
  type filter hook output priority 0;
  oifname "l1" meta priority 1:10 ip dscp ef udp dport %[1]d counter
  oifname "l2" meta priority 1:10 ip dscp ef udp dport %[1]d counter
 }
}
`, tlRelayPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	tl.run("box", "nft", "-f", rules)
	for i := range 2 {
		st := tl.waitReachable(i, true)
		if st.RTT <= 0 || !st.Open || st.LastReply.IsZero() {
			t.Fatalf("line %d stats %+v: want an RTT and a reply", i, st)
		}
	}
	if !tl.box.Reachable() {
		t.Fatal("Reachable() false with both lines answering")
	}
	labtest.WaitFor(t, "the relay to know both lines", 5*time.Second, func() bool {
		ps := tl.relay.Paths("hq")
		return len(ps) == 2 && ps[0].Addr.Addr().String() == "10.77.1.2" && ps[1].Addr.Addr().String() == "10.77.2.2"
	})
	labtest.WaitFor(t, "an echo across the tunnel", 10*time.Second, func() bool { return tl.ping(1) })
	st := tl.box.Stats()
	if st[0].BytesOut == 0 || st[0].BytesIn == 0 || st[1].BytesOut != 0 || !st[0].Current {
		t.Fatalf("stats %+v: want the tunnel on fttc only", st)
	}
	counted := regexp.MustCompile(`counter packets [1-9]`)
	labtest.WaitFor(t, "voice priority and EF on both lines' outer packets", 5*time.Second, func() bool {
		out, err := tl.l.Run("box", "nft", "list", "table", "inet", "voicechk")
		return err == nil && len(counted.FindAllString(out, -1)) == 2
	})

	tl.ip("box", "link set l1 down")
	tl.box.SetLine(1)
	before := tl.box.Stats()
	if !tl.ping(2) {
		t.Fatal("no echo after moving to lte")
	}
	after := tl.box.Stats()
	if after[1].BytesOut <= before[1].BytesOut || after[1].BytesIn <= before[1].BytesIn || after[0].BytesOut != before[0].BytesOut {
		t.Fatalf("stats before %+v after %+v: want the packet out and back on lte only", before, after)
	}
	tl.waitReachable(0, false)
	labtest.WaitFor(t, "the log to say fttc is unreachable", 5*time.Second, func() bool {
		return strings.Contains(tl.log.String(), "line=fttc reachable=false")
	})

	// fttc's interface is deleted and made again (a modem re-enumerating): a new index.
	tl.ip("box", "link del l1")
	tl.addLine(1)
	tl.waitReachable(0, true)
	tl.box.SetLine(0)
	before = tl.box.Stats()
	if !tl.ping(3) {
		t.Fatal("no echo after moving back to the re-created fttc")
	}
	if after := tl.box.Stats(); after[0].BytesOut <= before[0].BytesOut || after[0].BytesIn <= before[0].BytesIn {
		t.Fatalf("stats before %+v after %+v: want the packet on fttc", before, after)
	}
}

// With duplication on, a line that silently drops everything (nft drop in the router) loses
// no packet of a 50/s stream in either direction.
func TestTunnelDuplicateLosesNothing(t *testing.T) {
	tl := newTunnelLab(t)
	tl.box.SetDuplicate(true)
	tl.waitReachable(0, true)
	tl.waitReachable(1, true)
	labtest.WaitFor(t, "the relay to duplicate to both lines", 5*time.Second, func() bool {
		ps := tl.relay.Paths("hq")
		return len(ps) == 2 && ps[0].Duplicate && ps[1].Duplicate
	})
	labtest.WaitFor(t, "an echo across the tunnel", 10*time.Second, func() bool { return tl.ping(0) })

	const total, dropAt = 200, 50
	var mu sync.Mutex
	echoed := map[uint32]bool{}
	go func() {
		buf := make([]byte, 64)
		tl.cli.SetReadDeadline(time.Time{})
		for {
			n, err := tl.cli.Read(buf)
			if err != nil {
				return
			}
			if n == 4 {
				mu.Lock()
				echoed[binary.BigEndian.Uint32(buf)] = true
				mu.Unlock()
			}
		}
	}()
	rules := t.TempDir() + "/drop.nft"
	if err := os.WriteFile(rules, []byte("table inet drop1 {\n chain dropall {\n  type filter hook forward priority 0;\n  iifname \"b1\" drop\n  oifname \"b1\" drop\n }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := uint32(1); seq <= total; seq++ {
		<-tick.C
		if seq == dropAt {
			tl.run("rt", "nft", "-f", rules)
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], seq)
		if _, err := tl.cli.Write(b[:]); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		at, back := 0, 0
		for seq := uint32(1); seq <= total; seq++ {
			if tl.gotAtRelay(seq) {
				at++
			}
			if echoed[seq] {
				back++
			}
		}
		return at, back
	}
	var at, back int
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if at, back = count(); at == total && back == total {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if at != total || back != total {
		t.Fatalf("with fttc dropping everything from packet %d: relay got %d of %d, box got %d echoes", dropAt, at, total, back)
	}
	st := tl.box.Stats()
	if st[1].DuplicateBytesOut == 0 {
		t.Fatalf("stats %+v: want lte's duplicate bytes counted", st)
	}
	tl.waitReachable(0, false)
}
