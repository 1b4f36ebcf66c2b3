package crowdsec_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/crowdsec"
	"github.com/officeedge/appliance/internal/crowdsec/lapitest"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/netcfg"
)

// box is a firewall owner on a namespace's real kernel, with the lab's config.
type box struct {
	fw    *netcfg.Firewall
	owner *netcfg.Owner
}

func newBox(t testing.TB, suffix string) *box {
	t.Helper()
	labtest.RequireRoot(t, "nft", "crowdsec", "cscli")
	_, h := labtest.Netns(t, suffix)
	fw := netcfg.New(int(h))
	w, err := netcfg.NewOwner(netcfg.OwnerOptions{Firewall: fw, StateDir: t.TempDir(), Check: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cfg, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		t.Fatal(err)
	}
	// A resolver of the box's own (the lab's is also a probe target, protected as that).
	cfg.DNS.Resolvers.Primary = append(cfg.DNS.Resolvers.Primary, config.Addr{Addr: boxResolver})
	if err := w.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return &box{fw: fw, owner: w}
}

// inKernel reports whether the kernel's blocklist has p.
func (b *box) inKernel(t testing.TB, p netip.Prefix) bool {
	t.Helper()
	got, err := b.fw.Lookup([]netip.Prefix{p})
	if err != nil {
		t.Fatal(err)
	}
	_, ok := got[p]
	return ok
}

// freePort is a loopback port nothing listens on now.
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// boxResolver is a DNS resolver of the test box's primary uplink.
var boxResolver = netip.MustParseAddr("198.18.53.53")

// unproven holds the sources whose sipguard blocks the tests' sipguard calls unproven (a
// forged UDP source): they are never shared. Every other block is proven.
var unproven = netip.MustParsePrefix("198.18.6.0/24")

func testShared(p netip.Prefix) (string, bool) {
	if unproven.Overlaps(p) {
		return "", false
	}
	return "it answered the PBX's challenge (test)", true
}

// service runs a crowdsec service for the box until the test ends (or stop is called).
func service(t testing.TB, b *box, cfg config.CrowdSec, dir string, al *alerts.Store) (*crowdsec.Service, func()) {
	t.Helper()
	s, err := crowdsec.New(crowdsec.Options{Config: cfg, Site: "test office", Owner: b.owner, StateDir: dir, Alerts: al, Shared: testShared})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

func active(al *alerts.Store, key string) bool {
	for _, a := range al.List() {
		if a.Key == key && a.Active {
			return true
		}
	}
	return false
}

func pfx(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

// Against Debian's real LAPI, over TLS with its certificate pinned: decisions added with
// cscli reach the kernel and leave it when deleted; a protected address is refused with an
// alert; sipguard's blocks become the fleet's decisions; with the LAPI down the decisions
// stay, the alerts wait on disk (across a restart of the service) and are delivered when it
// is back.
func TestBouncerAndMachineAgainstRealLAPI(t *testing.T) {
	b := newBox(t, "cs")
	dir := t.TempDir()
	lapi, err := lapitest.Start(filepath.Join(dir, "lapi"), "", freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lapi.Stop)
	creds := filepath.Join(dir, "creds")
	os.MkdirAll(creds, 0o700)
	if err := lapi.AddBouncer("box", filepath.Join(creds, "bouncer")); err != nil {
		t.Fatal(err)
	}
	if err := lapi.AddMachine("box", filepath.Join(creds, "machine")); err != nil {
		t.Fatal(err)
	}
	cfg := config.CrowdSec{Enabled: true, URL: lapi.URL, PinSHA256: lapi.Pin, BouncerKeyFile: filepath.Join(creds, "bouncer"),
		MachineID: "box", MachinePasswordFile: filepath.Join(creds, "machine"), Interval: 500 * time.Millisecond, MaxBodyMB: 8}
	al := alerts.New(time.Now)
	state := filepath.Join(dir, "state")
	s, stop := service(t, b, cfg, state, al)

	// The fleet's decisions are checked against the box's own protections: the LAN, the
	// box's DNS resolver and its NTP server are refused, whoever at the fleet asked.
	addr, rng, lan := pfx("198.18.3.3"), pfx("198.18.4.0/24"), pfx(lab.Phone4)
	resolver, ntp := netip.PrefixFrom(boxResolver, 32), pfx("192.0.2.123")
	for _, p := range []netip.Prefix{addr, rng, lan, resolver, ntp} {
		if err := lapi.Decide(p, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	labtest.WaitFor(t, "cscli's decisions in the kernel", 20*time.Second, func() bool {
		return b.inKernel(t, addr) && b.inKernel(t, rng)
	})
	e, _ := b.owner.Lookup(addr)
	if len(e.Claims) != 1 || e.Claims[0].Source != netcfg.SourceCrowdSec || !strings.Contains(e.Claims[0].Reason, "cscli") || e.Until().IsZero() {
		t.Errorf("entry %+v: want one crowdsec claim naming its origin, with an end", e)
	}
	labtest.WaitFor(t, "the protected LAN address, resolver and NTP server refused with an alert", 10*time.Second, func() bool {
		return active(al, crowdsec.KeyRefused) && len(s.Status().Refused) == 3
	})
	for _, p := range []netip.Prefix{lan, resolver, ntp} {
		if b.inKernel(t, p) {
			t.Errorf("%s (protected) is in the kernel: a decision must never block it", p)
		}
	}
	refused := strings.Join(s.Status().Refused, "\n")
	for _, why := range []string{"the office LAN", "a DNS resolver of uplink", "the NTP server 192.0.2.123"} {
		if !strings.Contains(refused, why) {
			t.Errorf("the refusals do not say %q:\n%s", why, refused)
		}
	}
	if err := lapi.Delete(addr.Addr()); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the deleted decision to leave the kernel", 20*time.Second, func() bool { return !b.inKernel(t, addr) })

	// A proven sipguard block becomes a decision at the LAPI, for the whole fleet; an
	// unproven one (made first) stays local.
	local := pfx("198.18.6.6")
	if _, err := b.owner.Block(netcfg.BlockRequest{Prefix: local, Source: netcfg.SourceSIPGuard, By: "scanner", Reason: "scanner: friendly-scanner (local only)", For: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the unproven block counted as kept local", 20*time.Second, func() bool { return s.Status().Local == 1 })
	scan := pfx("198.18.7.7")
	if _, err := b.owner.Block(netcfg.BlockRequest{Prefix: scan, Source: netcfg.SourceSIPGuard, By: "scanner", Reason: "scanner: friendly-scanner", For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "sipguard's block to be a decision at the LAPI", 20*time.Second, func() bool {
		d, err := lapi.Decisions()
		return err == nil && d[scan.Addr().String()] == "officeedge/sip-scanner"
	})
	if d, err := lapi.Decisions(); err != nil || d[local.Addr().String()] != "" {
		t.Errorf("the unproven block reached the LAPI (%v): %v", err, d)
	}
	if st := s.Status(); st.Pushed != 1 {
		t.Errorf("%d alerts pushed, want the proven one alone", st.Pushed)
	}

	// The LAPI goes away: decisions stay, alerts queue, on disk.
	lapi.Stop()
	brute := pfx("198.18.8.8")
	if _, err := b.owner.Block(netcfg.BlockRequest{Prefix: brute, Source: netcfg.SourceSIPGuard, By: "brute-force", Reason: "brute-force: 101", For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "pull and push alerts with the LAPI down", 20*time.Second, func() bool {
		return active(al, crowdsec.KeyPull) && active(al, crowdsec.KeyPush) && s.Status().Queued == 1
	})
	if !b.inKernel(t, rng) {
		t.Errorf("%s left the kernel while the LAPI was down", rng)
	}
	stop() // and the box restarts while the LAPI is still away
	s, _ = service(t, b, cfg, state, al)
	if q := s.Status().Queued; q != 1 {
		t.Fatalf("after a restart %d alerts queued, want the 1 from before", q)
	}
	if err := lapi.Restart(); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the queued alert delivered once the LAPI is back", 40*time.Second, func() bool {
		d, err := lapi.Decisions()
		return err == nil && d[brute.Addr().String()] == "officeedge/sip-bruteforce" && s.Status().Queued == 0
	})
	labtest.WaitFor(t, "the alerts cleared", 10*time.Second, func() bool {
		return !active(al, crowdsec.KeyPull) && !active(al, crowdsec.KeyPush)
	})
	if !b.inKernel(t, rng) {
		t.Errorf("%s left the kernel after the LAPI came back", rng)
	}
}

// Something posing as the LAPI (it can't be made to misbehave) answers garbage, then a 1 GB
// body, then decisions that aren't addresses: each is refused with a clear error, the box
// keeps its last good decisions, and nothing crashes.
func TestHostileLAPIRefused(t *testing.T) {
	b := newBox(t, "hostile")
	good := `{"new":[{"id":1,"origin":"crowdsec","scenario":"x","scope":"Ip","type":"ban","value":"198.18.5.5","duration":"1h"}],"deleted":null}`
	answers := make(chan func(http.ResponseWriter), 8)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != "key-0123456789" {
			http.Error(w, "who?", http.StatusForbidden)
			return
		}
		select {
		case f := <-answers:
			f(w)
		default:
			io.WriteString(w, `{"new":null,"deleted":null}`)
		}
	}))
	srv.StartTLS()
	defer srv.Close()
	sum := sha256.Sum256(srv.Certificate().Raw)
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("key-0123456789\n"), 0o600)
	cfg := config.CrowdSec{Enabled: true, URL: srv.URL, PinSHA256: hex.EncodeToString(sum[:]), BouncerKeyFile: keyFile, Interval: 500 * time.Millisecond, MaxBodyMB: 8}
	answers <- func(w http.ResponseWriter) { io.WriteString(w, good) }
	al := alerts.New(time.Now)
	s, _ := service(t, b, cfg, "", al)
	kept := pfx("198.18.5.5")
	labtest.WaitFor(t, "the good decision in the kernel", 10*time.Second, func() bool { return b.inKernel(t, kept) })

	for _, c := range []struct {
		name, want string
		answer     func(http.ResponseWriter)
	}{
		{"malformed JSON", "not the JSON expected", func(w http.ResponseWriter) { io.WriteString(w, `{"new":[{"id":`) }},
		{"a 1 GB body", "over 8 MB", func(w http.ResponseWriter) {
			io.WriteString(w, `{"new":[`)
			chunk := bytes.Repeat([]byte(" "), 1<<20)
			for range 1024 {
				if _, err := w.Write(chunk); err != nil {
					return // the box hung up, as it should
				}
			}
		}},
		{"a server error", "500", func(w http.ResponseWriter) { http.Error(w, "db locked", http.StatusInternalServerError) }},
	} {
		answers <- c.answer
		labtest.WaitFor(t, c.name+" refused", 20*time.Second, func() bool {
			st := s.Status()
			return strings.Contains(st.PullError, c.want) && active(al, crowdsec.KeyPull)
		})
		if !b.inKernel(t, kept) {
			t.Fatalf("after %s the last good decision left the kernel", c.name)
		}
	}
	// Decisions that are not addresses are counted and left out; the good one stays.
	answers <- func(w http.ResponseWriter) {
		io.WriteString(w, `{"new":[`+good[8:len(good)-17]+`,
			{"id":2,"scope":"Ip","type":"ban","value":"not-an-ip","duration":"1h"},
			{"id":3,"scope":"Country","type":"ban","value":"XX","duration":"1h"},
			{"id":4,"scope":"Ip","type":"captcha","value":"198.18.6.6","duration":"1h"},
			{"id":5,"scope":"Ip","type":"ban","value":"198.18.6.7","duration":"forever"}],"deleted":null}`)
	}
	labtest.WaitFor(t, "odd decisions ignored after a whole pull", 20*time.Second, func() bool {
		st := s.Status()
		return st.PullError == "" && st.Ignored == 4 && st.Decisions == 1 && !active(al, crowdsec.KeyPull)
	})
	if !b.inKernel(t, kept) || b.inKernel(t, pfx("198.18.6.6")) || b.inKernel(t, pfx("198.18.6.7")) {
		t.Errorf("kernel: want only %s of this answer's decisions", kept)
	}
}

// bigFleet is a real LAPI holding n ban decisions (imported with cscli) and a box whose
// bouncer pulls them; it returns when all n are in the kernel, with the time that took.
func bigFleet(tb testing.TB, n int) (*box, *lapitest.LAPI, time.Duration) {
	tb.Helper()
	b := newBox(tb, "big")
	dir := tb.TempDir()
	lapi, err := lapitest.Start(filepath.Join(dir, "lapi"), "", freePort(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(lapi.Stop)
	var csv strings.Builder
	csv.WriteString("duration,scope,value\n")
	for _, p := range lab.Blocklist(n, 0) {
		csv.WriteString("4h,ip," + p.Addr().String() + "\n")
	}
	list := filepath.Join(dir, "decisions.csv")
	if err := os.WriteFile(list, []byte(csv.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	if _, err := lapi.CLI("decisions", "import", "-i", list); err != nil {
		tb.Fatal(err)
	}
	key := filepath.Join(dir, "bouncer")
	if err := lapi.AddBouncer("big", key); err != nil {
		tb.Fatal(err)
	}
	cfg := config.CrowdSec{Enabled: true, URL: lapi.URL, CAFile: lapi.CAFile, BouncerKeyFile: key, Interval: time.Second, MaxBodyMB: 64}
	start := time.Now()
	s, _ := service(tb, b, cfg, "", nil)
	labtest.WaitFor(tb, fmt.Sprintf("%d decisions in the kernel", n), 3*time.Minute, func() bool {
		return b.owner.State().Kernel.Addrs4 >= n && s.Status().Decisions == n
	})
	return b, lapi, time.Since(start)
}

// 50,000 decisions (a fleet's worth, or a community list pushed through the LAPI) load in
// one batch, and a deletion among them still reaches the kernel.
func TestBouncerLoadsFiftyThousand(t *testing.T) {
	const n = 50000
	b, lapi, _ := bigFleet(t, n)
	one := lab.Blocklist(n, 0)[n/2]
	if !b.inKernel(t, one) {
		t.Fatalf("%s not in the kernel", one)
	}
	if err := lapi.Delete(one.Addr()); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the deleted decision to leave the kernel", 30*time.Second, func() bool { return !b.inKernel(t, one) })
}

// BenchmarkStartup50k is the time from the service's start to 50,000 decisions in the kernel.
func BenchmarkStartup50k(b *testing.B) {
	_, _, took := bigFleet(b, 50000)
	b.ReportMetric(took.Seconds(), "startup_s")
}

// A LAPI that asks for client certificates takes the box with its certificate and refuses
// it without one, with an error that says so.
func TestClientCertificate(t *testing.T) {
	b := newBox(t, "cert")
	dir := t.TempDir()
	lapi, err := lapitest.Start(filepath.Join(dir, "lapi"), "", freePort(t), lapitest.RequireClientCert())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lapi.Stop)
	key := filepath.Join(dir, "bouncer")
	if err := lapi.AddBouncer("cert", key); err != nil {
		t.Fatal(err)
	}
	ban := pfx("198.18.12.12")
	if err := lapi.Decide(ban, time.Hour); err != nil {
		t.Fatal(err)
	}
	cfg := config.CrowdSec{Enabled: true, URL: lapi.URL, CAFile: lapi.CAFile, BouncerKeyFile: key, Interval: 500 * time.Millisecond, MaxBodyMB: 8}
	without, stop := service(t, b, cfg, "", nil)
	labtest.WaitFor(t, "a pull without a certificate refused", 10*time.Second, func() bool {
		return strings.Contains(without.Status().PullError, "certificate")
	})
	stop()
	if b.inKernel(t, ban) {
		t.Fatal("decision pulled without a client certificate")
	}
	cfg.CertFile, cfg.KeyFile = lapi.ClientCert, lapi.ClientKey
	service(t, b, cfg, "", nil)
	labtest.WaitFor(t, "the decision pulled with the certificate", 10*time.Second, func() bool { return b.inKernel(t, ban) })
}
