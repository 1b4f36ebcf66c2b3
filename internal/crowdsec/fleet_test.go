package crowdsec_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/internal/crowdsec/lapitest"
	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
	"github.com/officeedge/appliance/wan/wanlab"
)

// The LAPI's address, on its namespace's loopback, reached from each office's internet.
const lapiAddr = "10.254.9.1"

var bin string // the appliance, built once

func TestMain(m *testing.M) { wanlab.Main(m, &bin) }

// fleet is two offices, each a whole lab with the real daemon, and one LAPI both reach
// through their internet (masqueraded there, as offices behind their ISPs would be).
type fleet struct {
	lapi *lapitest.LAPI
	a, b *wanlab.Site
	fwB  *netcfg.Firewall
}

func newFleet(tb testing.TB, name string) *fleet {
	tb.Helper()
	labtest.RequireRoot(tb, "nft", "crowdsec", "cscli")
	dir := tb.TempDir()
	ns := name + "-lapi"
	run := func(args ...string) {
		tb.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			tb.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "set", "lo", "up")
	run("ip", "-n", ns, "addr", "add", lapiAddr+"/32", "dev", "lo")
	lapi, err := lapitest.Start(filepath.Join(dir, "lapi"), ns, lapiAddr+":8080")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(lapi.Stop)
	f := &fleet{lapi: lapi}
	// connect joins a site's internet core to the LAPI's namespace over link n.
	connect := func(n int) func(*wanlab.Site) error {
		return func(s *wanlab.Site) error {
			netNS := s.Lab.NS(lab.HostNet)
			peer := fmt.Sprintf("site%d", n)
			lapiSide, netSide := fmt.Sprintf("10.254.%d.1", 10+n), fmt.Sprintf("10.254.%d.2", 10+n)
			for _, c := range [][]string{
				{"ip", "link", "add", "cs0", "netns", netNS, "type", "veth", "peer", "name", peer, "netns", ns},
				{"ip", "-n", netNS, "addr", "add", netSide + "/30", "dev", "cs0"},
				{"ip", "-n", netNS, "link", "set", "cs0", "up"},
				{"ip", "-n", ns, "addr", "add", lapiSide + "/30", "dev", peer},
				{"ip", "-n", ns, "link", "set", peer, "up"},
				{"ip", "-n", netNS, "route", "add", lapiAddr + "/32", "via", lapiSide},
				{"ip", "netns", "exec", netNS, "nft", "add table ip fleet; add chain ip fleet post { type nat hook postrouting priority 100; }; add rule ip fleet post oifname cs0 masquerade"},
			} {
				if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
					return fmt.Errorf("%s: %w: %s", strings.Join(c, " "), err, out)
				}
			}
			return nil
		}
	}
	start := func(n int, id string) *wanlab.Site {
		creds := filepath.Join(dir, id)
		if err := os.MkdirAll(creds, 0o700); err != nil {
			tb.Fatal(err)
		}
		if err := lapi.AddBouncer(id, filepath.Join(creds, "bouncer")); err != nil {
			tb.Fatal(err)
		}
		if err := lapi.AddMachine(id, filepath.Join(creds, "machine")); err != nil {
			tb.Fatal(err)
		}
		cfg := string(wanlab.Config(fmt.Sprintf(`
[crowdsec]
enabled = true
url = %q
ca_file = %q
bouncer_key_file = %q
machine_id = %q
machine_password_file = %q
interval = "1s"`, lapi.URL, lapi.CAFile, filepath.Join(creds, "bouncer"), id, filepath.Join(creds, "machine"))))
		// SIP from anyone, so that the attacker's scanner reaches the LAN where sipguard listens.
		cfg = strings.Replace(cfg, "[pbx]\n", "[pbx]\nallow_sip_from_anywhere = true\n", 1)
		cfg = strings.Replace(cfg, `site = "Lab Office"`, `site = "Office `+id+`"`, 1)
		siteDir := filepath.Join(dir, "site-"+id)
		if err := os.MkdirAll(siteDir, 0o700); err != nil {
			tb.Fatal(err)
		}
		s, err := wanlab.Start(fmt.Sprintf("%s%d", name, n), bin, siteDir, []byte(cfg), connect(n))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			if tb.Failed() {
				tb.Logf("daemon %s log:\n%s", id, lastLines(s.Log(), 40))
				tb.Logf("LAPI log:\n%s", lastLines(lapi.Log(), 20))
			}
			_ = s.Close()
		})
		return s
	}
	f.a, f.b = start(1, "box-a"), start(2, "box-b")
	h, err := netns.GetFromName(f.b.Lab.NS(lab.HostBox))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	f.fwB = netcfg.New(int(h))
	return f
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// scan sends one SIP OPTIONS with a scanner's User-Agent from src, an address of site s's
// attacker, to the box.
func scan(tb testing.TB, s *wanlab.Site, src netip.Addr, tag string) {
	tb.Helper()
	c, err := s.Lab.DialUDP(lab.HostAttacker, src.String()+":5071", lab.BoxWAN4+":5060")
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	msg := "OPTIONS sip:100@" + lab.BoxWAN4 + " SIP/2.0\r\nVia: SIP/2.0/UDP " + src.String() + ":5071;branch=z9hG4bK" + tag +
		"\r\nFrom: <sip:100@" + src.String() + ">;tag=" + tag + "\r\nTo: <sip:100@" + lab.BoxWAN4 + ">\r\nCall-ID: " + tag +
		"\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		tb.Fatal(err)
	}
}

// attacker gives both sites' attacker host the address a (the same bot scans every office).
func (f *fleet) attacker(tb testing.TB, a netip.Addr) {
	tb.Helper()
	for _, s := range []*wanlab.Site{f.a, f.b} {
		if _, err := s.Lab.Run(lab.HostAttacker, "ip", "addr", "add", a.String()+"/24", "dev", "eth0", "nodad"); err != nil {
			tb.Fatal(err)
		}
	}
}

func (f *fleet) inB(tb testing.TB, a netip.Addr) bool {
	got, err := f.fwB.Lookup([]netip.Prefix{netip.PrefixFrom(a, 32)})
	if err != nil {
		tb.Fatal(err)
	}
	_, ok := got[netip.PrefixFrom(a, 32)]
	return ok
}

// claimSince is when site s's owner took a claim from source on a, if it has one.
func claimSince(tb testing.TB, s *wanlab.Site, a netip.Addr, source string) (time.Time, bool) {
	st := blockState(tb, s)
	e, ok := st.Lookup(netip.PrefixFrom(a, 32))
	if !ok {
		return time.Time{}, false
	}
	for _, c := range e.Claims {
		if c.Source == source {
			return c.Since, true
		}
	}
	return time.Time{}, false
}

// An attacker caught scanning office A is dropped at office B: B's kernel has it from the
// fleet's decision, and B's PBX never sees its packets. A decision made at the LAPI with
// cscli reaches both offices, and leaves both when deleted.
func TestFleetSharesABlock(t *testing.T) {
	f := newFleet(t, lab.Unique(t))
	bot := netip.MustParseAddr("192.0.2.77")
	f.attacker(t, bot)
	labtest.WaitFor(t, "office A's sipguard to block the scanner", 20*time.Second, func() bool {
		scan(t, f.a, bot, "a")
		_, ok := claimSince(t, f.a, bot, netcfg.SourceSIPGuard)
		return ok
	})
	labtest.WaitFor(t, "office B's kernel to have the bot from the fleet", 30*time.Second, func() bool { return f.inB(t, bot) })
	if _, ok := claimSince(t, f.b, bot, netcfg.SourceSIPGuard); ok {
		t.Errorf("office B's sipguard blocked the bot itself: it must have been the fleet")
	}
	if _, ok := claimSince(t, f.b, bot, netcfg.SourceCrowdSec); !ok {
		t.Errorf("office B's entry for the bot has no crowdsec claim")
	}
	// B drops the bot's packets at the door: its scan is never seen by B's sipguard.
	before := sipguardSeen(t, f.b)
	scan(t, f.b, bot, "b")
	labtest.WaitFor(t, "the bot's packet counted as dropped at office B", 10*time.Second, func() bool {
		n, err := f.fwB.Lookup([]netip.Prefix{netip.PrefixFrom(bot, 32)})
		return err == nil && n[netip.PrefixFrom(bot, 32)].Packets > 0
	})
	if after := sipguardSeen(t, f.b); after != before {
		t.Errorf("office B's sipguard saw %d SIP messages more: the bot's scan got through", after-before)
	}

	manual := netip.MustParsePrefix("198.18.66.0/24")
	if err := f.lapi.Decide(manual, time.Hour); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "cscli's decision at both offices", 30*time.Second, func() bool {
		_, a := blockState(t, f.a).Lookup(manual)
		_, b := blockState(t, f.b).Lookup(manual)
		return a && b
	})
	if _, err := f.lapi.CLI("decisions", "delete", "--range", manual.String()); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the deleted decision gone from both offices", 30*time.Second, func() bool {
		_, a := blockState(t, f.a).Lookup(manual)
		_, b := blockState(t, f.b).Lookup(manual)
		return !a && !b
	})
}

// BenchmarkFleetPropagation is the time from office A's verdict (its owner's claim) to the
// address in office B's kernel, with a 1 s pull, over b.N bots (scripts/bench-crowdsec).
func BenchmarkFleetPropagation(b *testing.B) {
	f := newFleet(b, "benchcs")
	var ms []float64
	for i := range max(b.N, 10) {
		bot := netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i%150)})
		f.attacker(b, bot)
		var since time.Time
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			scan(b, f.a, bot, fmt.Sprint("bench", i))
			if s, ok := claimSince(b, f.a, bot, netcfg.SourceSIPGuard); ok {
				since = s
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if since.IsZero() {
			b.Fatalf("office A never blocked %s", bot)
		}
		deadline = time.Now().Add(30 * time.Second)
		for !f.inB(b, bot) {
			if time.Now().After(deadline) {
				b.Fatalf("%s never reached office B", bot)
			}
			time.Sleep(10 * time.Millisecond)
		}
		ms = append(ms, float64(time.Since(since).Milliseconds()))
	}
	sort.Float64s(ms)
	b.ReportMetric(ms[len(ms)/2], "p50_ms")
	b.ReportMetric(ms[(len(ms)*95+99)/100-1], "p95_ms")
	b.ReportMetric(float64(len(ms)), "trials")
}

func blockState(tb testing.TB, s *wanlab.Site) *netcfg.BlockState {
	tb.Helper()
	body, err := daemon.Call(s.Control, "GET", "/blocklist", nil)
	if err != nil {
		tb.Fatalf("GET /blocklist: %v", err)
	}
	var v struct{ State netcfg.BlockState }
	if err := json.Unmarshal(body, &v); err != nil {
		tb.Fatal(err)
	}
	return &v.State
}

// sipguardSeen is how many SIP messages site s's sipguard has decoded.
func sipguardSeen(tb testing.TB, s *wanlab.Site) uint64 {
	tb.Helper()
	body, err := daemon.Call(s.Control, "GET", "/sipguard/status", nil)
	if err != nil {
		tb.Fatalf("GET /sipguard/status: %v", err)
	}
	var v struct{ Stats sipguard.Stats }
	if err := json.Unmarshal(body, &v); err != nil {
		tb.Fatal(err)
	}
	return v.Stats.SIP
}
