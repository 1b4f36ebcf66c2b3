package crowdsec_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/crowdsec"
	"github.com/officeedge/appliance/internal/crowdsec/lapitest"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// The LAPI's address, on its namespace's loopback, reached from each office's internet.
const lapiAddr = "10.254.9.1"

var bin string // the appliance, built once

func TestMain(m *testing.M) { sitelab.Main(m, &bin) }

// fleet is two offices, each a whole lab with the real daemon, and one LAPI both reach
// through their internet (masqueraded there, as offices behind their ISPs would be).
type fleet struct {
	lapi *lapitest.LAPI
	a, b *sitelab.Site
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
	connect := func(n int) func(*sitelab.Site) error {
		return func(s *sitelab.Site) error {
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
	start := func(n int, id string) *sitelab.Site {
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
		cfg := string(sitelab.Config(fmt.Sprintf(`
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
		s, err := sitelab.Start(fmt.Sprintf("%s%d", name, n), bin, siteDir, []byte(cfg), connect(n))
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
func scan(tb testing.TB, s *sitelab.Site, src netip.Addr, tag string) {
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

// provenScan is a scanner that proves its address first, from src on site s's attacker: a
// REGISTER, then, with the nonce of the PBX's 401 sent back, a REGISTER naming the scanner.
func provenScan(tb testing.TB, s *sitelab.Site, src netip.Addr, tag string) {
	tb.Helper()
	c, err := s.Lab.DialUDP(lab.HostAttacker, src.String()+":5073", lab.BoxWAN4+":5060")
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	reg := func(cseq int, ua, auth string) string {
		return "REGISTER sip:" + lab.BoxWAN4 + " SIP/2.0\r\nVia: SIP/2.0/UDP " + src.String() + ":5073;branch=z9hG4bK" + tag + fmt.Sprint(cseq) +
			"\r\nFrom: <sip:1001@" + lab.BoxWAN4 + ">;tag=" + tag + "\r\nTo: <sip:1001@" + lab.BoxWAN4 + ">\r\nCall-ID: " + tag +
			"\r\nCSeq: " + fmt.Sprint(cseq) + " REGISTER\r\nContact: <sip:1001@" + src.String() + ":5073>\r\n" + auth +
			"User-Agent: " + ua + "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	}
	if _, err := c.Write([]byte(reg(1, "Yealink SIP-T46S", ""))); err != nil {
		return // an ICMP error from an earlier packet: the caller tries again
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		return
	}
	m := regexp.MustCompile(`nonce="([^"]+)"`).FindSubmatch(buf[:n])
	if m == nil {
		return
	}
	auth := `Authorization: Digest username="1001", realm="pbx", nonce="` + string(m[1]) + `", uri="sip:` + lab.BoxWAN4 + `", response="00000000000000000000000000000000"` + "\r\n"
	_, _ = c.Write([]byte(reg(2, "friendly-scanner", auth)))
}

// attacker gives both sites' attacker host the address a (the same bot scans every office).
func (f *fleet) attacker(tb testing.TB, a netip.Addr) {
	tb.Helper()
	for _, s := range []*sitelab.Site{f.a, f.b} {
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
func claimSince(tb testing.TB, s *sitelab.Site, a netip.Addr, source string) (time.Time, bool) {
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

// crack runs sipp from src, an address of site s's attacker, as a password cracker that
// answers the PBX's digest challenges (it sends back each nonce, with wrong passwords for
// extension 1001), until its traffic stops or secs pass.
func crack(tb testing.TB, s *sitelab.Site, src netip.Addr, secs int) string {
	tb.Helper()
	scen, err := filepath.Abs(filepath.Join("..", "..", "sipguard", "testdata", "sipp", "register.xml"))
	if err != nil {
		tb.Fatal(err)
	}
	out, _ := s.Lab.Command(lab.HostAttacker, "timeout", "-s", "KILL", fmt.Sprint(secs), "sipp", "-nostdin", "-timeout", fmt.Sprint(secs-2)+"s",
		"-sf", scen, "-i", src.String(), "-p", "5060", "-s", "1001", "-au", "1001", "-ap", "guess", "-m", "20", "-r", "5", "-l", "1",
		"-recv_timeout", "2000", lab.BoxWAN4+":5060").CombinedOutput()
	return string(out)
}

// What office A shares is only what its source proved: a cracker that answered the PBX's
// challenges (sipp against A's real Kamailio) is dropped at office B, from the fleet's
// decision, and B's PBX never sees its packets. A single UDP scanner packet, which anyone
// can send with any source address, is blocked at A for a short time and never reaches the
// LAPI, nor B. A decision made at the LAPI with cscli reaches both offices, and leaves both
// when deleted.
func TestFleetSharesABlock(t *testing.T) {
	f := newFleet(t, lab.Unique(t))
	labtest.Kamailio(t, f.a.Lab, map[string]string{"1001": "pw1001"})
	forged, bot := netip.MustParseAddr("192.0.2.76"), netip.MustParseAddr("192.0.2.77")
	f.attacker(t, forged)
	f.attacker(t, bot)
	labtest.WaitFor(t, "office A's sipguard to block the forged scanner locally", 20*time.Second, func() bool {
		scan(t, f.a, forged, "a")
		_, ok := claimSince(t, f.a, forged, netcfg.SourceSIPGuard)
		return ok
	})
	if e, ok := blockState(t, f.a).Lookup(netip.PrefixFrom(forged, 32)); !ok || time.Until(e.Until()) > sipguard.DefaultUnprovenBlockTime {
		t.Errorf("the forged scanner's block at A ends %s, want within the unproven %s", e.Until(), sipguard.DefaultUnprovenBlockTime)
	}
	out := crack(t, f.a, bot, 15)
	labtest.WaitFor(t, "office A's sipguard to block the cracker", 20*time.Second, func() bool {
		_, ok := claimSince(t, f.a, bot, netcfg.SourceSIPGuard)
		return ok
	})
	labtest.WaitFor(t, "the cracker's decision at the LAPI", 30*time.Second, func() bool {
		d, err := f.lapi.Decisions()
		return err == nil && d[bot.String()] == "officeedge/sip-bruteforce"
	})
	labtest.WaitFor(t, "office B's kernel to have the cracker from the fleet", 30*time.Second, func() bool { return f.inB(t, bot) })
	// A pushes in the order it blocks: the scanner, blocked first, would be there by now.
	if d, err := f.lapi.Decisions(); err != nil || d[forged.String()] != "" {
		t.Errorf("the forged scanner reached the LAPI (%v): %v", err, d)
	}
	if f.inB(t, forged) {
		t.Errorf("the forged scanner is blocked at office B")
	}
	if st := crowdsecStatus(t, f.a); st.Local < 1 || st.Pushed < 1 {
		t.Errorf("office A's sharing status %+v: want the scanner kept local and the cracker pushed", st)
	}
	if _, ok := claimSince(t, f.b, bot, netcfg.SourceSIPGuard); ok {
		t.Errorf("office B's sipguard blocked the cracker itself: it must have been the fleet")
	}
	if _, ok := claimSince(t, f.b, bot, netcfg.SourceCrowdSec); !ok {
		t.Errorf("office B's entry for the cracker has no crowdsec claim")
	}
	// B drops the cracker's packets at the door: its scan is never seen by B's sipguard.
	before := sipguardSeen(t, f.b)
	scan(t, f.b, bot, "b")
	labtest.WaitFor(t, "the cracker's packet counted as dropped at office B", 10*time.Second, func() bool {
		n, err := f.fwB.Lookup([]netip.Prefix{netip.PrefixFrom(bot, 32)})
		return err == nil && n[netip.PrefixFrom(bot, 32)].Packets > 0
	})
	if after := sipguardSeen(t, f.b); after != before {
		t.Errorf("office B's sipguard saw %d SIP messages more: the cracker got through", after-before)
	}
	if t.Failed() {
		t.Logf("sipp:\n%s", lastLines(out, 20))
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
// address in office B's kernel, with a 1 s pull, over b.N bots (scripts/bench-crowdsec). Each
// bot proves its address (provenScan) so that its verdict is shared.
func BenchmarkFleetPropagation(b *testing.B) {
	f := newFleet(b, "benchcs")
	labtest.Kamailio(b, f.a.Lab, map[string]string{"1001": "pw1001"})
	var ms []float64
	for i := range max(b.N, 10) {
		bot := netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i%150)})
		f.attacker(b, bot)
		var since time.Time
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			provenScan(b, f.a, bot, fmt.Sprint("bench", i))
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

func blockState(tb testing.TB, s *sitelab.Site) *netcfg.BlockState {
	tb.Helper()
	v, err := s.Client().Blocklist()
	if err != nil {
		tb.Fatalf("GET /blocklist: %v", err)
	}
	if v.State == nil {
		tb.Fatal("GET /blocklist: no state")
	}
	return v.State
}

// sipguardSeen is how many SIP messages site s's sipguard has decoded.
func sipguardSeen(tb testing.TB, s *sitelab.Site) uint64 {
	tb.Helper()
	var v struct{ Stats sipguard.Stats }
	if err := s.Client().GetJSON(control.PathSIPGuardStatus, &v); err != nil {
		tb.Fatalf("GET /sipguard/status: %v", err)
	}
	return v.Stats.SIP
}

// crowdsecStatus is site s's fleet-sharing status.
func crowdsecStatus(tb testing.TB, s *sitelab.Site) crowdsec.Status {
	tb.Helper()
	var st crowdsec.Status
	if err := s.Client().GetJSON(control.PathCrowdSecStatus, &st); err != nil {
		tb.Fatalf("GET /crowdsec/status: %v", err)
	}
	return st
}
