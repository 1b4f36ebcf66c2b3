package sipguard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/store"
	"github.com/officeedge/appliance/netcfg"
	"golang.org/x/net/bpf"
)

// fakeFirewall records blocks; the kernel path is covered by the lab tests.
type fakeFirewall struct {
	mu    sync.Mutex
	state map[netip.Prefix]time.Duration
	fail  bool
}

func newFake() *fakeFirewall { return &fakeFirewall{state: map[netip.Prefix]time.Duration{}} }

func (f *fakeFirewall) Block(p netip.Prefix, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("netlink: no buffer space")
	}
	f.state[p] = d
	return nil
}

func (f *fakeFirewall) Unblock(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.state, p)
	return nil
}

func (f *fakeFirewall) Blocklist() ([]netcfg.Blocked, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netcfg.Blocked
	for p, d := range f.state {
		out = append(out, netcfg.Blocked{Prefix: p, Expires: d, Packets: 7})
	}
	return out, nil
}

func (f *fakeFirewall) get(p string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.state[netip.MustParsePrefix(p)]
	return d, ok
}

// ip4 wraps a transport header and payload in an IPv4 header.
func ip4(src, dst netip.Addr, proto byte, l4 []byte) []byte {
	b := make([]byte, 20, 20+len(l4))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(l4)))
	b[8], b[9] = 64, proto
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	return append(b, l4...)
}

// udp wraps a SIP payload in IPv4/UDP headers.
func udp(src, dst netip.Addr, payload []byte) []byte {
	l4 := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(l4[0:], 5060)
	binary.BigEndian.PutUint16(l4[2:], 5060)
	binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	return ip4(src, dst, 17, append(l4, payload...))
}

// tcp wraps a payload in IPv4/TCP headers (ACK|PSH).
func tcp(src, dst netip.Addr, payload []byte) []byte {
	l4 := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(l4[0:], 40000)
	binary.BigEndian.PutUint16(l4[2:], 5060)
	l4[12], l4[13] = 5<<4, 0x18
	return ip4(src, dst, 6, append(l4, payload...))
}

func newTestGuard(t *testing.T, fw Firewall, dir string) (*Guard, *events.Bus, func()) {
	t.Helper()
	bus := events.New(100)
	g, err := New(Options{Thresholds: testThresholds(), Firewall: fw, Bus: bus, StateDir: dir,
		Protected: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}, EvidenceAfter: 10 * time.Millisecond, Site: "Test Office"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return g, bus, stop
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBlockEscalatesAndSurvivesRestart(t *testing.T) {
	fw := newFake()
	dir := t.TempDir()
	g, _, cancel := newTestGuard(t, fw, dir)
	scan := req("OPTIONS", "100", "sipvicious", "friendly-scanner", "s1", 1, "")
	for i, want := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 7 * 24 * time.Hour} {
		g.Handle(time.Now(), udp(attacker, pbx, scan))
		waitUntil(t, "block", func() bool { d, ok := fw.get("192.0.2.66/32"); return ok && d == want })
		if i < 3 {
			if err := g.Unblock(netip.MustParsePrefix("192.0.2.66/32")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Evidence: pcapng with the packet, report with registry, counts and hash.
	waitUntil(t, "report", func() bool { m, _ := filepath.Glob(filepath.Join(dir, "evidence", "*.txt")); return len(m) > 0 })
	reports, _ := filepath.Glob(filepath.Join(dir, "evidence", "*.txt"))
	rep, _ := os.ReadFile(reports[0])
	for _, want := range []string{"192.0.2.66", "ARIN", "friendly-scanner", "Sample message 1", "sha256 "} {
		if !strings.Contains(string(rep), want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	pcaps, _ := filepath.Glob(filepath.Join(dir, "evidence", "*.pcapng"))
	pc, _ := os.ReadFile(pcaps[0])
	if !bytes.HasPrefix(pc, []byte{0x0a, 0x0d, 0x0d, 0x0a}) || !bytes.Contains(pc, []byte("friendly-scanner")) {
		t.Errorf("pcapng %d bytes, no packet", len(pc))
	}
	cancel()

	// A reboot empties the kernel set; a new Guard puts the block back.
	fw2 := newFake()
	g2, _, _ := newTestGuard(t, fw2, dir)
	d, ok := fw2.get("192.0.2.66/32")
	if !ok || d < 7*24*time.Hour-time.Minute {
		t.Fatalf("after restart: blocked=%v for %s", ok, d)
	}
	list, _ := g2.Blocked()
	if len(list) != 1 || list[0].Reason != "scanner" || list[0].Since.IsZero() || list[0].Dropped != 7 {
		t.Errorf("Blocked() = %+v", list)
	}
}

func TestTrustedPeerAlertedNotBlocked(t *testing.T) {
	fw := newFake()
	g, bus, _ := newTestGuard(t, fw, "")
	ch, stop := bus.Subscribe(10)
	defer stop()
	g.Handle(time.Now(), udp(trunk, pbx, req("OPTIONS", "1", "1", "sipcli/v1.8", "x", 1, "")))
	select {
	case e := <-ch:
		if e.Kind != "sipguard.peer" || e.Severity != events.Alert {
			t.Errorf("event %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no alert")
	}
	if _, ok := fw.get("192.0.2.10/32"); ok {
		t.Fatal("trusted peer blocked")
	}
}

func TestMalformedPacketsNeverCrash(t *testing.T) {
	g, _, _ := newTestGuard(t, newFake(), "")
	for _, b := range [][]byte{nil, {0x45}, make([]byte, 20), {0x60, 0, 0, 0, 0, 8, 17, 64}, udp(attacker, pbx, []byte("\x00\xffINVITE"))} {
		g.Handle(time.Now(), b)
	}
	for name, b := range torture(t) {
		_ = name
		g.Handle(time.Now(), udp(attacker, pbx, b))
	}
}

func TestFeeds(t *testing.T) {
	var mu sync.Mutex
	broken := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case broken:
			http.Error(w, "down", 503)
		case r.URL.Path == "/api/KEY/banned":
			fmt.Fprint(w, `{"ipaddress":["203.0.113.5","203.0.113.6"],"ID":"1001"}`)
		case r.URL.Path == "/api/KEY/banned/1001":
			fmt.Fprint(w, `{"ipaddress":["198.51.100.77"],"ID":"1002"}`)
		case r.URL.Path == "/api/KEY/banned/1002":
			w.WriteHeader(400)
			fmt.Fprint(w, `{"ipaddress":[],"ID":"none"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f := Feed{Name: "apiban", URL: srv.URL + "/api/KEY", Format: "apiban"}
	ps, err := f.Load(context.Background(), srv.Client())
	if err != nil || len(ps) != 3 {
		t.Fatalf("apiban: %v %v", ps, err)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "list.txt")
	os.WriteFile(file, []byte("# a community list\n203.0.113.0/28 # a network\n\n2001:db8::66\n192.0.2.10\n"), 0o600)
	fw := newFake()
	g, bus, cancel := newTestGuard(t, fw, filepath.Join(dir, "state"))
	evs, unsub := bus.Subscribe(100)
	defer unsub()
	ctx, stopFeed := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		g.RunFeed(ctx, Feed{Name: "text", File: file, Format: "text", Interval: 20 * time.Millisecond}, nil)
		close(done)
	}()
	waitUntil(t, "feed", func() bool { _, ok := fw.get("2001:db8::66/128"); return ok })
	if _, ok := fw.get("192.0.2.10/32"); ok {
		t.Error("a trusted peer listed by a feed was blocked")
	}
	// The file goes bad: the last good list stays (and keeps being refreshed).
	// (Replaced whole, so the feed never reads a half-written file that happens to parse.)
	if err := store.WriteFile(file, []byte("203.0.113.0/28\nthis is not an address\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for failed, deadline := 0, time.After(5*time.Second); failed < 3; {
		select {
		case e := <-evs:
			if e.Kind == "sipguard.feed" && e.Severity == events.Warn {
				failed++
			}
		case <-deadline:
			t.Fatalf("%d failed loads reported, want 3", failed)
		}
	}
	if g.FeedSize("text") != 2 {
		t.Errorf("after a bad load the feed holds %d entries, want the last good 2", g.FeedSize("text"))
	}
	stopFeed()
	<-done
	cancel()
	// And after a restart, before any load succeeds, the saved good list is in force.
	os.Remove(file)
	fw2 := newFake()
	g2, _, _ := newTestGuard(t, fw2, filepath.Join(dir, "state"))
	ctx2, stop2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() {
		g2.RunFeed(ctx2, Feed{Name: "text", File: file, Format: "text", Interval: time.Hour}, nil)
		close(done2)
	}()
	waitUntil(t, "saved feed", func() bool { _, ok := fw2.get("203.0.113.0/28"); return ok })
	stop2()
	<-done2
	_ = ps
}

func TestParseTextErrors(t *testing.T) {
	if _, err := ParseText(strings.NewReader("192.0.2.1\n999.1.1.1\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %v, want one naming line 2", err)
	}
}

func TestRIR(t *testing.T) {
	for a, want := range map[string]string{"192.0.2.66": "ARIN", "81.2.69.142": "RIPE", "1.1.1.1": "APNIC", "2a00:1450::1": "RIPE", "200.1.1.1": "LACNIC", "41.1.1.1": "AFRINIC"} {
		if got, _ := RIR(netip.MustParseAddr(a)); got != want {
			t.Errorf("RIR(%s) = %s, want %s", a, got, want)
		}
	}
}

func TestAbuseContactFromRDAP(t *testing.T) {
	asked := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked++
		if r.URL.Path != "/ip/192.0.2.66" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"entities":[{"roles":["registrant"],"entities":[{"roles":["abuse"],"vcardArray":["vcard",[["version",{},"text","4.0"],["email",{},"text","abuse@example.net"]]]}]}]}`)
	}))
	defer srv.Close()
	l := &AbuseLookup{Client: srv.Client(), Base: srv.URL + "/"}
	for i := 0; i < 2; i++ {
		got, err := l.Contact(context.Background(), attacker)
		if err != nil || got != "abuse@example.net" {
			t.Fatalf("abuse contact %q %v", got, err)
		}
	}
	if asked != 1 {
		t.Errorf("asked the RDAP service %d times, want 1 (cached)", asked)
	}
}

// A burst of packets from one source: one block at the first offense's timeout, however
// many packets were in flight before the kernel dropped it.
func TestBurstIsOneOffense(t *testing.T) {
	for _, evict := range []bool{false, true} {
		fw := newFake()
		g, err := New(Options{Thresholds: testThresholds(), Firewall: fw})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			g.Handle(time.Now(), udp(attacker, pbx, req("INVITE", "+88112345", "1001", "", fmt.Sprint("b", i), 1, "")))
			if evict { // as if its record were evicted between packets: block() must still hold
				g.mu.Lock()
				g.eng.Forget(attacker)
				g.mu.Unlock()
			}
		}
		// The worker's queue, worked through here so the test knows when it is done.
		for len(g.acts) > 0 {
			g.act(context.Background(), <-g.acts)
		}
		if d, ok := fw.get("192.0.2.66/32"); !ok || d != time.Hour {
			t.Errorf("evict=%v: blocked %v for %s, want the first offense's hour", evict, ok, d)
		}
		if n := g.st.Offenses["192.0.2.66/32"].N; n != 1 {
			t.Errorf("evict=%v: offense %d after one burst", evict, n)
		}
	}
}

// Trusted peers, admin networks and office hosts are never blocked: not by a feed listing
// a network around them, not by a state file that lists them.
func TestProtectedNeverBlockedByFeedOrRestore(t *testing.T) {
	dir := t.TempDir()
	st := `{"blocks":{
 "192.0.2.10/32":{"prefix":"192.0.2.10/32","reason":"scanner","since":"2026-01-01T00:00:00Z","expires":"2999-01-01T00:00:00Z","offense":1},
 "192.168.50.0/24":{"prefix":"192.168.50.0/24","reason":"manual","since":"2026-01-01T00:00:00Z","expires":"0001-01-01T00:00:00Z","offense":1},
 "bad":null,
 "203.0.113.9/32":{"prefix":"203.0.113.9/32","reason":"scanner","since":"2026-01-01T00:00:00Z","expires":"2999-01-01T00:00:00Z","offense":1}},
 "offenses":{}}`
	if err := os.WriteFile(filepath.Join(dir, "blocks.json"), []byte(st), 0o600); err != nil {
		t.Fatal(err)
	}
	fw := newFake()
	g, _, _ := newTestGuard(t, fw, dir)
	for _, p := range []string{"192.0.2.10/32", "192.168.50.0/24"} {
		if _, ok := fw.get(p); ok {
			t.Errorf("%s restored into the kernel", p)
		}
	}
	if _, ok := fw.get("203.0.113.9/32"); !ok {
		t.Error("an ordinary entry was not restored")
	}
	if n := g.applyFeed("t", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("0.0.0.0/0"),
		netip.MustParsePrefix("192.168.50.7/32"), netip.MustParsePrefix("198.51.100.0/24")}, time.Hour); n != 1 {
		t.Errorf("feed put %d entries in force, want only 198.51.100.0/24", n)
	}
	for _, p := range []string{"192.0.2.0/24", "0.0.0.0/0", "192.168.50.7/32"} {
		if _, ok := fw.get(p); ok {
			t.Errorf("feed entry %s, which holds a protected address, was blocked", p)
		}
	}
}

// Several messages in one TCP segment: the scanner hidden behind an innocent request (and
// a keep-alive) is still seen.
func TestPipelinedTCPMessages(t *testing.T) {
	fw := newFake()
	g, _, _ := newTestGuard(t, fw, "")
	seg := append(req("OPTIONS", "100", "1001", "Yealink", "p1", 1, ""), "\r\n\r\n"...)
	seg = append(seg, req("OPTIONS", "100", "1001", "friendly-scanner", "p2", 1, "")...)
	g.Handle(time.Now(), tcp(attacker, pbx, seg))
	waitUntil(t, "block", func() bool { _, ok := fw.get("192.0.2.66/32"); return ok })
	if s, _ := g.Snapshot(); s.SIP != 2 || s.Malformed != 0 {
		t.Errorf("stats %+v, want 2 SIP messages", s)
	}
	// Over UDP a datagram is one message: trailing bytes are its body, never a second one.
	g2, _, _ := newTestGuard(t, newFake(), "")
	g2.Handle(time.Now(), udp(attacker, pbx, seg))
	if s, _ := g2.Snapshot(); s.SIP != 1 {
		t.Errorf("UDP stats %+v, want 1 SIP message", s)
	}
}

// The per-packet path allocates nothing for a source already tracked, UDP or pipelined TCP.
func TestHandleNoAllocs(t *testing.T) {
	g, err := New(Options{Thresholds: testThresholds(), Firewall: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	m := req("REGISTER", "100", "100", "Yealink", "c", 1, "a100")
	pkts := [][]byte{udp(attacker, pbx, m), tcp(attacker, pbx, append(append([]byte(nil), m...), m...)),
		udp(pbx, attacker, resp(401, "REGISTER", "100", "c", 1))}
	now := time.Now()
	for _, p := range pkts {
		g.Handle(now, p)
		if n := testing.AllocsPerRun(100, func() { g.Handle(now, p) }); n != 0 {
			t.Errorf("%v allocations per packet", n)
		}
	}
}

// FuzzHandle: any bytes as a raw IP packet, or as the payload of a UDP or TCP packet,
// never panic the per-packet path.
func FuzzHandle(f *testing.F) {
	for _, b := range torture(f) {
		f.Add(b)
	}
	f.Add(append(req("OPTIONS", "1", "1", "x", "p", 1, ""), req("INVITE", "+881", "1", "", "q", 1, "")...))
	v6 := ip6(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 5060, true, req("OPTIONS", "1", "1", "x", "p", 1, ""))
	f.Add(v6)
	frag := append([]byte(nil), v6...)
	frag[6], frag[42], frag[43] = 44, 0, 0 // the extension header as a first fragment
	f.Add(frag)
	g, err := New(Options{Thresholds: testThresholds(), Firewall: newFake()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		now := time.Now()
		g.Handle(now, b)
		g.Handle(now, udp(attacker, pbx, b))
		g.Handle(now, tcp(attacker, pbx, b))
		for len(g.acts) > 0 { // no worker: keep the queue from filling
			<-g.acts
		}
	})
}

// Offenses older than the memory are pruned from the state, except for an address still blocked.
func TestOldOffensesPruned(t *testing.T) {
	g, err := New(Options{Thresholds: testThresholds(), Firewall: newFake(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	g.st.Offenses["203.0.113.1/32"] = &offense{N: 2, Last: now.Add(-31 * 24 * time.Hour)}
	g.st.Offenses["203.0.113.2/32"] = &offense{N: 1, Last: now.Add(-time.Hour)}
	g.st.Offenses["203.0.113.3/32"] = &offense{N: 3, Last: now.Add(-40 * 24 * time.Hour)}
	g.st.Blocks["203.0.113.3/32"] = &Entry{Prefix: netip.MustParsePrefix("203.0.113.3/32")} // until unblocked
	g.expireEntries(now)
	for k, want := range map[string]bool{"203.0.113.1/32": false, "203.0.113.2/32": true, "203.0.113.3/32": true} {
		if _, ok := g.st.Offenses[k]; ok != want {
			t.Errorf("offense of %s kept: %v, want %v", k, ok, want)
		}
	}
	data, err := os.ReadFile(filepath.Join(g.o.StateDir, "blocks.json"))
	if err != nil || bytes.Contains(data, []byte("203.0.113.1/32")) {
		t.Errorf("state file still lists the pruned offense (%v):\n%s", err, data)
	}
}

// The evidence directory keeps the newest files, and those of blocks still in force.
func TestEvidencePruned(t *testing.T) {
	dir := t.TempDir()
	g, err := New(Options{Thresholds: testThresholds(), Firewall: newFake(), StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ev := filepath.Join(dir, "evidence")
	for i := 0; i < 10; i++ {
		if err := os.WriteFile(filepath.Join(ev, fmt.Sprintf("20261121T1200%02dZ-203.0.113.%d.txt", i, i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	active := filepath.Join(ev, "20261121T120001Z-203.0.113.1.txt")
	g.st.Blocks["203.0.113.1/32"] = &Entry{Report: active}
	g.pruneEvidence(4)
	ents, _ := os.ReadDir(ev)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name()[:16])
	}
	if want := "20261121T120001Z 20261121T120006Z 20261121T120007Z 20261121T120008Z 20261121T120009Z"; strings.Join(names, " ") != want {
		t.Errorf("kept %v, want %s", names, want)
	}
}

// A finding dropped because the worker's queue is full is not forgotten: the source's
// next packet raises it again.
func TestDroppedActionRetried(t *testing.T) {
	g, err := New(Options{Thresholds: testThresholds(), Firewall: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	for len(g.acts) < cap(g.acts) {
		g.acts <- action{}
	}
	scan := udp(attacker, pbx, req("OPTIONS", "100", "sipvicious", "friendly-scanner", "s1", 1, ""))
	g.Handle(time.Now(), scan) // dropped
	<-g.acts                   // room for one
	g.Handle(time.Now(), scan)
	if s, _ := g.Snapshot(); s.Findings != 2 {
		t.Fatalf("%d findings, want the dropped one raised again", s.Findings)
	}
}

// A blocked source that a reload makes a trusted peer is unblocked at once.
func TestReloadTrustingUnblocks(t *testing.T) {
	fw := newFake()
	g, _, _ := newTestGuard(t, fw, t.TempDir())
	g.Handle(time.Now(), udp(attacker, pbx, req("OPTIONS", "100", "sipvicious", "friendly-scanner", "s1", 1, "")))
	waitUntil(t, "block", func() bool { _, ok := fw.get("192.0.2.66/32"); return ok })
	g.SetThresholds(testThresholds(), []netip.Prefix{netip.MustParsePrefix("192.0.2.64/30")})
	if _, ok := fw.get("192.0.2.66/32"); ok {
		t.Error("still blocked after it became a trusted peer")
	}
	if l, _ := g.Blocked(); len(l) != 0 {
		t.Errorf("still listed: %+v", l)
	}
}

// ip6 wraps a UDP payload in IPv6 headers, with a Destination Options header when destOpts.
func ip6(src, dst netip.Addr, dport uint16, destOpts bool, payload []byte) []byte {
	l4 := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(l4[0:], 40000)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	l4 = append(l4, payload...)
	next := byte(17)
	if destOpts { // next header UDP, length 0 (8 bytes), PadN of 4
		l4 = append([]byte{17, 0, 1, 4, 0, 0, 0, 0}, l4...)
		next = 60
	}
	b := make([]byte, 40, 40+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	b[6], b[7] = next, 64
	copy(b[8:24], src.AsSlice())
	copy(b[24:40], dst.AsSlice())
	return append(b, l4...)
}

// SIP behind an IPv6 extension header (which the kernel forwards) passes the capture filter
// and is read: a scanner adding a Destination Options header is blocked all the same.
func TestIPv6ExtensionHeaders(t *testing.T) {
	src, dst := netip.MustParseAddr("2001:db8:66::1"), netip.MustParseAddr("2001:db8:50::10")
	scan := req("OPTIONS", "100", "sipvicious", "friendly-scanner", "s1", 1, "")
	raw, err := Filter([]uint16{5060})
	if err != nil {
		t.Fatal(err)
	}
	var prog []bpf.Instruction
	for _, r := range raw {
		prog = append(prog, r.Disassemble())
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		pkt  []byte
		pass bool
	}{
		{ip6(src, dst, 5060, true, scan), true},
		{ip6(src, dst, 5060, false, scan), true},
		{ip6(src, dst, 53, true, scan), false},
		{ip6(src, dst, 53, false, scan), false},
	} {
		n, err := vm.Run(c.pkt)
		if pass := err == nil && n > 0 && sipPorts(c.pkt, []uint16{5060}); pass != c.pass {
			t.Errorf("packet to port %d (ext %v): captured %v, want %v", binary.BigEndian.Uint16(c.pkt[len(c.pkt)-len(scan)-6:]), c.pkt[6] == 60, pass, c.pass)
		}
	}
	frag := ip6(src, dst, 5060, true, scan)
	frag[6], frag[42], frag[43] = 44, 0, 0 // a first fragment
	if ip, ok := decodeIP(frag, 0); !ok || !bytes.HasPrefix(ip.payload, []byte("OPTIONS ")) {
		t.Errorf("first fragment: decoded %v, payload %q", ok, ip.payload)
	}
	frag[43] = 8 // a later fragment: no transport header to read
	if _, ok := decodeIP(frag, 0); ok {
		t.Error("a later fragment was decoded")
	}
	fw := newFake()
	g, _, _ := newTestGuard(t, fw, "")
	g.Handle(time.Now(), ip6(src, dst, 5060, true, scan))
	waitUntil(t, "block", func() bool { _, ok := fw.get("2001:db8:66::1/128"); return ok })
}

// A block the kernel refused counts no offense, and the source's next packet tries again.
func TestFailedBlockRetried(t *testing.T) {
	fw := newFake()
	fw.fail = true
	g, err := New(Options{Thresholds: testThresholds(), Firewall: fw})
	if err != nil {
		t.Fatal(err)
	}
	scan := udp(attacker, pbx, req("OPTIONS", "100", "sipvicious", "friendly-scanner", "s1", 1, ""))
	g.Handle(time.Now(), scan)
	g.act(context.Background(), <-g.acts)
	fw.mu.Lock()
	fw.fail = false
	fw.mu.Unlock()
	g.Handle(time.Now(), scan)
	if len(g.acts) != 1 {
		t.Fatal("the source's next packet raised nothing after the failed block")
	}
	g.act(context.Background(), <-g.acts)
	if d, ok := fw.get("192.0.2.66/32"); !ok || d != time.Hour {
		t.Errorf("blocked %v for %s, want a first offense's hour", ok, d)
	}
}
