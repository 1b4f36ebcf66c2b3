package sipguard

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// capLab is two namespaces joined by a veth pair: cap0 (where sipguard captures) and snd0
// (where packets come from).
type capLab struct {
	t *testing.T
	l *lab.Lab
}

const (
	capHost, sndHost = lab.HostBox, lab.HostAttacker // names Attach's Close knows
	capAddr          = "198.51.100.1"
)

// newCapLab makes the namespaces under a prefix of its own ("sg…": no lab of labtest.New
// has it) and removes them when the test ends.
func newCapLab(t *testing.T) *capLab {
	labtest.RequireRoot(t)
	c := &capLab{t: t, l: lab.Attach("sg" + lab.Unique(t)[1:])}
	t.Cleanup(func() {
		if err := c.l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	c.run("ip", "netns", "add", c.l.NS(capHost))
	c.run("ip", "netns", "add", c.l.NS(sndHost))
	c.link()
	return c
}

func (c *capLab) run(args ...string) {
	c.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// link makes the veth pair, its addresses (the sender has three), and brings it up.
func (c *capLab) link() {
	c.t.Helper()
	cns, sns := c.l.NS(capHost), c.l.NS(sndHost)
	c.run("ip", "link", "add", "name", "cap0", "netns", cns, "type", "veth", "peer", "name", "snd0", "netns", sns)
	c.run("ip", "-n", cns, "addr", "add", capAddr+"/24", "dev", "cap0")
	for _, a := range []string{"198.51.100.66", "198.51.100.67", "198.51.100.68"} {
		c.run("ip", "-n", sns, "addr", "add", a+"/24", "dev", "snd0")
	}
	c.run("ip", "-n", cns, "link", "set", "cap0", "up")
	c.run("ip", "-n", sns, "link", "set", "snd0", "up")
}

// scan sends a scanner's OPTIONS from src to the capture side until fw has a block of src.
func (c *capLab) scan(fw *fakeBlocker, src string) {
	c.t.Helper()
	conn, err := c.l.DialUDP(sndHost, src+":5060", capAddr+":5060")
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	msg := req("OPTIONS", "100", "sipvicious", "friendly-scanner", "scan-"+src, 1, "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Writes fail now and then (the ICMP error of an earlier packet): retried.
		_, _ = conn.Write(msg)
		if _, ok := fw.get(src + "/32"); ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the scanner at %s was not seen", src)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A capture outlives its link: down, then up again; deleted, then made again. Each time it
// says it paused, does not return, resumes by itself and goes on seeing scanners.
func TestCaptureSurvivesLinkDown(t *testing.T) {
	c := newCapLab(t)
	fw := newFake()
	g, bus, _ := newTestGuard(t, fw, "")
	evs, unsub := bus.Subscribe(1000)
	defer unsub()
	var cp *Capturer
	if err := c.l.Do(capHost, func() (err error) { cp, err = Listen("cap0", []uint16{5060}); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- cp.Serve(ctx, g) }() // from this namespace: it re-opens in cap0's
	c.scan(fw, "198.51.100.66")

	paused := func(e events.Event) bool { return e.Kind == "sipguard.capture" && e.Severity == events.Warn }
	resumed := func(e events.Event) bool { return e.Kind == "sipguard.capture" && e.Severity == events.Info }
	c.run("ip", "-n", c.l.NS(capHost), "link", "set", "cap0", "down")
	if e := waitEvent(t, evs, paused); e.Message != "capture on cap0 paused: link down" {
		t.Errorf("paused: %q", e.Message)
	}
	// Down for a while (several looks at the link): Serve must still be waiting.
	select {
	case err := <-served:
		t.Fatalf("Serve returned while the link was down: %v", err)
	case <-time.After(time.Second):
	}
	c.run("ip", "-n", c.l.NS(capHost), "link", "set", "cap0", "up")
	if e := waitEvent(t, evs, func(e events.Event) bool {
		if paused(e) {
			t.Errorf("paused twice: %q", e.Message)
		}
		return resumed(e)
	}); e.Message != "capture on cap0 resumed" {
		t.Errorf("resumed: %q", e.Message)
	}
	c.scan(fw, "198.51.100.67")

	// Deleted (both ends of the pair) and made again: a new interface, a new socket.
	c.run("ip", "-n", c.l.NS(capHost), "link", "del", "cap0")
	waitEvent(t, evs, paused)
	c.link()
	waitEvent(t, evs, resumed)
	c.scan(fw, "198.51.100.68")

	select {
	case err := <-served:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return when its context ended")
	}
	if s, _ := g.Snapshot(); s.Findings < 3 {
		t.Errorf("stats %+v, want the three scanners found", s)
	}
}

// Packets the kernel drops on a full capture socket (here: one not read while a burst
// arrives) are counted from its PACKET_STATISTICS and shown in Stats.
func TestCaptureDropsCounted(t *testing.T) {
	c := newCapLab(t)
	g, _, _ := newTestGuard(t, newFake(), "")
	var cp *Capturer
	if err := c.l.Do(capHost, func() (err error) { cp, err = Listen("cap0", []uint16{5060}); return err }); err != nil {
		t.Fatal(err)
	}
	conn, err := c.l.DialUDP(sndHost, "198.51.100.66:5060", capAddr+":5060")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// ~8 MB while nobody reads: far more than a socket's receive buffer holds.
	msg := append(req("OPTIONS", "100", "100", "Yealink", "burst", 1, ""), make([]byte, 1000)...)
	for i := 0; i < 8000; i++ {
		_, _ = conn.Write(msg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- cp.Serve(ctx, g) }()
	labtest.WaitFor(t, "the backlog read", 10*time.Second, func() bool { s, _ := g.Snapshot(); return s.Packets > 0 })
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	s, _ := g.Snapshot()
	t.Logf("read %d packets, the kernel dropped %d", s.Packets, s.CaptureDrops)
	if s.CaptureDrops == 0 || s.Dropped < s.CaptureDrops || s.Packets+s.CaptureDrops > 8000 {
		t.Errorf("stats %+v: want the drops of the unread socket counted", s)
	}
}
