package relaylab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/relay/box"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// The tests run the real appliance in the lab's box and `appliance relay` (the same binary)
// in its relay host, with keys the lab made. The trunk sends a call's media where the SDP
// said and never latches on to where the PBX's media comes from; line faults are made at
// the ISPs, a dead relay at the relay host.

var bin string // the appliance, built once

func TestMain(m *testing.M) { sitelab.Main(m, &bin) }

// wanLines make failback quick (2 s of a clean line, never longer): each test fails over
// and back several times on purpose.
var wanLines = []string{`stability = "2s"`, `hold_down_max = "2s"`}

// start builds a lab with the relay running and the daemon on the config box makes from the
// relay's keys; it shows both logs if the test fails and tears it all down at the end.
func start(t *testing.T, box func(*sitelab.Relay) []byte) (*sitelab.Site, *sitelab.Relay) {
	t.Helper()
	labtest.RequireRoot(t, "nft", "conntrack", "ss")
	t.Parallel()
	r, err := sitelab.NewRelay(bin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sitelab.Start(lab.Unique(t), bin, t.TempDir(), box(r), r.Start)
	if err != nil {
		t.Fatalf("%v\nrelay log:\n%s", err, r.Log())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s\nrelay log:\n%s", s.Log(), r.Log())
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitActive(t *testing.T, s *sitelab.Site, r wan.Role) {
	t.Helper()
	_, err := s.WaitStatus(20*time.Second, "active "+string(r), func(st wan.Status) bool { return st.Active == r })
	must(t, err)
}

// call starts a call's media (each call its own ports, as a PBX gives each call its own) and
// waits until it runs both ways; it ends with the test.
func call(t *testing.T, s *sitelab.Site, sdp string, n int) *sitelab.Call {
	t.Helper()
	c, err := sitelab.StartCall(s.Lab, sitelab.CallOptions{SDP: sdp, PBXPort: sitelab.CallPBXPort + 2*n, TrunkPort: sitelab.CallTrunkPort + 2*n, Max: 3 * time.Minute})
	must(t, err)
	t.Cleanup(c.Stop)
	flowing(t, c, c.Mark(), "at the start of the call")
	return c
}

// flowing waits until the call's media sent after m is heard both ways.
func flowing(t *testing.T, c *sitelab.Call, m sitelab.Mark, when string) {
	t.Helper()
	labtest.WaitFor(t, "media both ways "+when, 15*time.Second, func() bool { return c.Flowing(m, 25) })
}

// lineFault is a fault of the fixed line: broken, or mended.
type lineFault struct {
	name string
	set  func(s *sitelab.Site, broken bool) error
}

var faults = []lineFault{
	{"carrier", func(s *sitelab.Site, broken bool) error { return s.Carrier(wan.Primary, !broken) }},
	{"silent", func(s *sitelab.Site, broken bool) error { return s.Silent(wan.Primary, broken) }},
}

// An active call keeps its media both ways across carrier loss and silent loss of the fixed
// line and the failbacks, with and without duplicate, when the trunk sends to the relay's
// address; without the relay, the same trunk's media to the fixed line's address is lost
// for the rest of the call (the control: the relay is what saves the call).
func TestCallSurvivesLineFaults(t *testing.T) {
	s, r := start(t, func(*sitelab.Relay) []byte { return sitelab.Config(wanLines...) })

	t.Run("control without the relay", func(t *testing.T) {
		c := call(t, s, lab.BoxWAN4, 0)
		must(t, s.Carrier(wan.Primary, false))
		waitActive(t, s, wan.Backup)
		m := c.Mark() // the line is gone: nothing the trunk sends from here can reach the PBX
		// The rest of the call: 3 s of the office's media reaching the trunk through LTE.
		labtest.WaitFor(t, "the PBX's media through LTE", 15*time.Second, func() bool { return c.ToTrunk.ArrivedSince(m.ToTrunk) >= 3*c.Rate })
		c.Stop()
		if n := c.ToPBX.ArrivedSince(m.ToPBX); n != 0 || c.ToPBX.AtEnd() {
			t.Fatalf("without the relay %d of the trunk's packets to the fixed line's address reached the PBX after the failover; the control expects none", n)
		}
		if !c.ToTrunk.AtEnd() {
			t.Fatal("the office's own media did not reach the trunk through LTE")
		}
		must(t, s.Carrier(wan.Primary, true))
		waitActive(t, s, wan.Primary)
	})

	for i, dup := range []bool{false, true} {
		t.Run(fmt.Sprintf("duplicate=%t", dup), func(t *testing.T) {
			must(t, s.Reload(r.BoxConfig(sitelab.Config(wanLines...), dup)))
			waitRelayUp(t, s)
			c := call(t, s, lab.Relay4, 1+i)
			for _, f := range faults {
				m := c.Mark()
				must(t, f.set(s, true))
				waitActive(t, s, wan.Backup)
				flowing(t, c, m, "after "+f.name+" loss of the fixed line")
				gpbx, gtrunk := c.Gaps(m)
				m = c.Mark()
				must(t, f.set(s, false))
				waitActive(t, s, wan.Primary)
				flowing(t, c, m, "after the failback from "+f.name+" loss")
				fpbx, ftrunk := c.Gaps(m)
				t.Logf("%s: media gap to the PBX %s, to the trunk %s; failback %s and %s", f.name, gpbx, gtrunk, fpbx, ftrunk)
			}
			m := c.Mark()
			labtest.WaitFor(t, "a last second of the call", 15*time.Second, func() bool { return c.Flowing(m, c.Rate) })
			c.Stop()
			if !c.ToPBX.AtEnd() || !c.ToTrunk.AtEnd() {
				t.Fatalf("the call lost its media: heard at the end by the PBX %t, by the trunk %t", c.ToPBX.AtEnd(), c.ToTrunk.AtEnd())
			}
			// The trunk saw the office only ever at the relay's address, whichever line
			// carried it: a trunk that allows one address keeps the call.
			if from := c.ToTrunk.From(0); !slices.Equal(from, []string{lab.Relay4}) {
				t.Fatalf("the trunk received the office's media from %v, want only the relay's %s", from, lab.Relay4)
			}
		})
	}
}

// With the relay: an inbound call 1 s after a failover reaches the PBX and is answered; the
// relay's SSH is open to the admin only; an attacker's password cracking at the relay's
// address is blocked in the relay's kernel and in the box's list; and a relay that answers
// on neither line sends voice direct, with an alert, until it answers again; a relay
// restart does not end the call.
func TestRelayEdges(t *testing.T) {
	s, r := start(t, func(r *sitelab.Relay) []byte { return r.BoxConfig(sitelab.Config(wanLines...), false) })
	waitRelayUp(t, s)

	t.Run("ssh only from admin networks", func(t *testing.T) {
		must(t, r.StartSSH())
		if _, err := sitelab.SSHBanner(s.Lab, lab.HostAdmin, lab.Relay4+":22", 5*time.Second); err != nil {
			t.Fatalf("the admin cannot reach the relay's SSH: %v", err)
		}
		if b, err := sitelab.SSHBanner(s.Lab, lab.HostAttacker, lab.Relay4+":22", 2*time.Second); err == nil {
			t.Fatalf("the attacker reached the relay's SSH: %s", b)
		}
	})

	t.Run("inbound call after a failover", func(t *testing.T) {
		uas, err := s.Lab.Start(lab.HostPBX, "sipp", "-sn", "uas", "-i", lab.PBX4, "-p", "5060", "-m", "1", "-nostdin", "-timeout", "40s")
		must(t, err)
		labtest.WaitFor(t, "sipp's UAS to listen on the PBX", 10*time.Second, func() bool {
			out, _ := s.Lab.Run(lab.HostPBX, "ss", "-Hlun", "sport = :5060")
			return strings.Contains(out, lab.PBX4+":5060")
		})
		must(t, s.Silent(wan.Primary, true))
		t.Cleanup(func() { _ = s.Silent(wan.Primary, false) }) // the next subtests start whole even if this one fails
		waitActive(t, s, wan.Backup)
		time.Sleep(time.Second) // the scenario: the call comes 1 s after the failover
		// The trunk's SIP port is its OPTIONS responder's; its call leaves from 5070.
		if out, err := s.Lab.Run(lab.HostTrunk, "sipp", "-sn", "uac", net.JoinHostPort(lab.Relay4, "5060"), "-i", lab.Trunk4, "-p", "5070",
			"-m", "1", "-nostdin", "-timeout", "30s", "-recv_timeout", "10s"); err != nil {
			t.Fatalf("the trunk's call to the relay's address failed: %v\n%s\nPBX side:\n%s", err, out, s.Lab.Output(uas))
		}
		if err := s.Lab.Wait(uas); err != nil {
			t.Fatalf("the PBX did not answer the call: %v\n%s", err, s.Lab.Output(uas))
		}
		must(t, s.Silent(wan.Primary, false))
		waitActive(t, s, wan.Primary)
	})

	t.Run("relay unreachable on both lines", func(t *testing.T) {
		c := call(t, s, lab.Relay4, 10)
		must(t, r.Unreachable(true))
		t.Cleanup(func() { _ = r.Unreachable(false) })
		waitRelayDirect(t, s, true)
		// The office's media now leaves from the fixed line's own address, as without a relay.
		m := c.Mark()
		labtest.WaitFor(t, "the PBX's media direct through the fixed line", 15*time.Second, func() bool {
			return slices.Contains(c.ToTrunk.From(m.ToTrunk), lab.BoxWAN4)
		})
		must(t, r.Unreachable(false))
		waitRelayDirect(t, s, false)
		m = c.Mark()
		flowing(t, c, m, "through the relay again")
		// A second on, the office's media comes from the relay's address only.
		m = c.Mark()
		labtest.WaitFor(t, "a second of the call through the relay", 15*time.Second, func() bool { return c.Flowing(m, c.Rate) })
		if from := c.ToTrunk.From(m.ToTrunk); !slices.Equal(from, []string{lab.Relay4}) {
			t.Fatalf("after the relay answered again, the trunk received the office's media from %v, want the relay's %s", from, lab.Relay4)
		}
	})

	t.Run("relay restart mid-call", func(t *testing.T) {
		c := call(t, s, lab.Relay4, 11)
		must(t, r.Restart())
		m := c.Mark()
		labtest.WaitFor(t, "the call's media both ways after the relay restarted", 30*time.Second, func() bool { return c.Flowing(m, 25) })
		waitRelayUp(t, s)
	})

	t.Run("attacker blocked at the relay and in the box", func(t *testing.T) {
		labtest.RequireRoot(t, "svcrack", "timeout")
		// svcrack's exit is the timeout's: what counts is where it got blocked.
		_, _ = s.Lab.Run(lab.HostAttacker, "timeout", "6", "svcrack", "-u", "1001", "-r", "1-200", lab.Relay4)
		attacker := netip.MustParseAddr(lab.Attacker4)
		fw := relayFirewall(t, s)
		labtest.WaitFor(t, "the attacker in the relay's kernel blocklist", 10*time.Second, func() bool {
			list, err := fw.Blocklist()
			return err == nil && slices.ContainsFunc(list, func(b netcfg.Blocked) bool { return b.Prefix.Contains(attacker) })
		})
		labtest.WaitFor(t, "the attacker in the box's blocklist", 15*time.Second, func() bool {
			v, err := s.Client().Blocklist()
			return err == nil && v.State != nil && slices.ContainsFunc(v.State.Entries, func(e netcfg.Entry) bool { return e.Prefix.Contains(attacker) })
		})
	})
}

// relayFirewall reads the relay host's nftables (its kernel blocklist) until the test ends.
func relayFirewall(t *testing.T, s *sitelab.Site) *netcfg.Firewall {
	t.Helper()
	f, err := os.Open("/run/netns/" + s.Lab.NS(lab.HostRelay))
	must(t, err)
	t.Cleanup(func() { f.Close() })
	fw := netcfg.New(int(f.Fd()))
	t.Cleanup(fw.Close)
	return fw
}

// waitRelayUp waits until the box says its voice goes through the relay.
func waitRelayUp(t *testing.T, s *sitelab.Site) {
	t.Helper()
	waitRelayDirect(t, s, false)
}

// waitRelayDirect waits until the box says its voice goes direct, with the relay's alert
// raised (direct), or through the relay with no such alert (!direct), as
// `appliance relay status` and the page show them.
func waitRelayDirect(t *testing.T, s *sitelab.Site, direct bool) {
	t.Helper()
	want := map[bool]string{false: box.UsingRelay, true: box.UsingDirect}[direct]
	var st box.Status
	var alerted bool
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		st, err = s.Client().RelayStatus()
		as, aerr := s.Client().Alerts()
		alerted = aerr == nil && slices.ContainsFunc(as, func(a alerts.Alert) bool { return a.Key == box.AlertKey && a.Active })
		if err == nil && st.Using == want && alerted == direct {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			st.WriteText(&b)
			t.Fatalf("the box does not say voice goes %s (relay alert raised: %t) within 20s (last error %v):\n%s", want, alerted, err, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
