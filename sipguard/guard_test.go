package sipguard

import (
	"bytes"
	"context"
	"encoding/binary"
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

// provenScan is a scanner that proved it receives what is sent to its address: it answers
// the PBX's challenge (sends back its nonce) with a scanner's User-Agent.
func provenScan(g *Guard, src netip.Addr, id string) {
	g.Handle(time.Now(), udp(src, pbx, req("REGISTER", "100", "100", "Yealink", id, 1, "")))
	g.Handle(time.Now(), udp(pbx, src, resp(401, "REGISTER", "100", id, 1)))
	g.Handle(time.Now(), udp(src, pbx, req("REGISTER", "100", "100", "friendly-scanner", id, 2, "100")))
}

func newTestGuard(t *testing.T, fw Blocker, dir string) (*Guard, *events.Bus, func()) {
	t.Helper()
	bus := events.New(100)
	th := testThresholds()
	th.Trusted = []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")} // the trunk
	g, err := New(Options{Thresholds: th, Blocker: fw, Bus: bus, StateDir: dir,
		EvidenceAfter: 10 * time.Millisecond, Site: "Test Office"})
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

// blockedNone waits until g lists no block of p.
func blockedNone(t *testing.T, g *Guard, p string) {
	t.Helper()
	waitUntil(t, p+" out of sipguard's list", func() bool {
		for _, e := range g.Blocked() {
			if e.Prefix.String() == p {
				return false
			}
		}
		return true
	})
}

func TestBlockEscalatesAndSurvivesRestart(t *testing.T) {
	fw := newFake()
	dir := t.TempDir()
	g, bus, cancel := newTestGuard(t, fw, dir)
	evs, unsub := bus.Subscribe(100)
	defer unsub()
	for i, want := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 7 * 24 * time.Hour} {
		provenScan(g, attacker, fmt.Sprint("s", i))
		waitUntil(t, "block", func() bool { d, ok := fw.get("192.0.2.66/32"); return ok && d == want })
		if i < 3 {
			// Unblocked on the page: sipguard forgets the source, keeps the offense.
			if _, err := fw.Unblock(netip.MustParsePrefix("192.0.2.66/32"), "admin (web)"); err != nil {
				t.Fatal(err)
			}
			blockedNone(t, g, "192.0.2.66/32")
		}
	}
	e, _ := fw.Lookup(netip.MustParsePrefix("192.0.2.66/32"))
	if c := e.Claims[0]; c.Source != netcfg.SourceSIPGuard || c.By != "scanner" || !strings.HasPrefix(c.Reason, "scanner: friendly-scanner (proven: ") {
		t.Errorf("claim %+v", c)
	}
	for seen := false; !seen; {
		select {
		case e := <-evs:
			seen = e.Kind == "sipguard.unblock" && e.Fields["addr"] == "192.0.2.66/32"
		case <-time.After(5 * time.Second):
			t.Fatal("no sipguard.unblock event")
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

	// A restart: the owner restores the block itself, sipguard only its record of it.
	blocks := fw.blocks
	g2, _, _ := newTestGuard(t, fw, dir)
	if fw.blocks != blocks {
		t.Errorf("a new Guard sent %d block requests at start, want none", fw.blocks-blocks)
	}
	list := g2.Blocked()
	if len(list) != 1 || list[0].Reason != "scanner" || list[0].Since.IsZero() || list[0].Dropped != 7 || !list[0].InKernel ||
		list[0].Offense != 4 || list[0].Evidence == "" || list[0].Report == "" {
		t.Fatalf("Blocked() = %+v", list)
	}
	if d := time.Until(list[0].Expires); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour {
		t.Errorf("expires in %s, want the owner's 7 days", d)
	}
	// The offenses survived too: the next block is a fifth offense.
	if _, err := fw.Unblock(netip.MustParsePrefix("192.0.2.66/32"), "root (cli)"); err != nil {
		t.Fatal(err)
	}
	blockedNone(t, g2, "192.0.2.66/32")
	provenScan(g2, attacker, "s5")
	waitUntil(t, "block after restart", func() bool { l := g2.Blocked(); return len(l) == 1 && l[0].Offense == 5 })
}

// A block lifted elsewhere (its sipguard claim gone, another one left) drops sipguard's
// record and its counters of the source, so the source is judged afresh.
func TestClaimGoneForgetsSource(t *testing.T) {
	fw := newFake()
	g, _, _ := newTestGuard(t, fw, t.TempDir())
	provenScan(g, attacker, "s1")
	waitUntil(t, "block", func() bool { _, ok := fw.get("192.0.2.66/32"); return ok })
	p := netip.MustParsePrefix("192.0.2.66/32")
	if _, err := fw.Block(netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceManual, By: "root (cli)"}); err != nil {
		t.Fatal(err)
	}
	if l := g.Blocked(); len(l) != 1 || !l[0].Expires.IsZero() {
		t.Fatalf("with a permanent manual claim too: %+v, want one entry until unblocked", l)
	}
	fw.expire(p, netcfg.SourceSIPGuard)
	blockedNone(t, g, "192.0.2.66/32")
	if _, n := g.Snapshot(); n != 0 {
		t.Errorf("%d sources still tracked after the claim went", n)
	}
	provenScan(g, attacker, "s2")
	waitUntil(t, "second block", func() bool { d, ok := fw.get("192.0.2.66/32"); return ok && d == 24*time.Hour })
}

// A source the owner protects is an alert naming the protection, not retried, and counts
// no offense: sipguard asks the owner first, and one protected only since (a reload, a
// DHCP lease) is refused by the owner with the same alert.
func TestOwnerProtectedIsAlert(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("late=%v", late), func(t *testing.T) {
			fw := newFake()
			fw.protected = []netip.Prefix{netip.MustParsePrefix("192.0.2.64/30")}
			var b Blocker = fw
			if late {
				b = lateProtection{fw}
			}
			g, err := New(Options{Thresholds: testThresholds(), Blocker: b})
			if err != nil {
				t.Fatal(err)
			}
			evs, unsub := g.o.Bus.Subscribe(10)
			defer unsub()
			scan := udp(attacker, pbx, req("OPTIONS", "100", "sipvicious", "friendly-scanner", "s1", 1, ""))
			g.Handle(time.Now(), scan)
			g.act(context.Background(), <-g.acts)
			g.Handle(time.Now(), scan)
			if len(g.acts) != 0 {
				t.Error("a refused protected source was raised again")
			}
			var alert bool
			for len(evs) > 0 {
				if e := <-evs; e.Kind == "sipguard.protected" && e.Severity == events.Alert && strings.Contains(e.Message, "gateway of uplink fttc") {
					alert = true
				}
			}
			if !alert {
				t.Error("no sipguard.protected alert naming the protection")
			}
			if l := g.Blocked(); len(l) != 0 {
				t.Errorf("records %+v", l)
			}
			if o := g.st.Offenses["192.0.2.66/32"]; o != nil && o.N != 0 {
				t.Errorf("offense %d counted for a refused block", o.N)
			}
			if want := map[bool]int{false: 0, true: 1}[late]; fw.blocks != want {
				t.Errorf("%d block requests for a source the owner protects, want %d", fw.blocks, want)
			}
		})
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
	fw.protected = []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}
	bus := events.New(100)
	evs, unsub := bus.Subscribe(100)
	defer unsub()
	ctx, stopFeed := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		RunFeed(ctx, Feed{Name: "text", File: file, Format: "text", Interval: 20 * time.Millisecond}, FeedOptions{Blocker: fw, Bus: bus})
		close(done)
	}()
	loaded := waitEvent(t, evs, func(e events.Event) bool { return e.Kind == "sipguard.feed" && e.Severity == events.Info })
	if f := loaded.Fields; f["entries"] != "2" || f["added"] != "2" || f["removed"] != "0" || f["refused"] != "1" {
		t.Errorf("feed event %+v, want 2 entries, 2 added, 0 removed, 1 refused", loaded)
	}
	if got, keep, _ := fw.feed("text"); len(got) != 2 || keep != 60*time.Millisecond {
		t.Errorf("feed %v kept for %s, want 2 entries for 3 intervals", got, keep)
	}
	// The file goes bad: nothing is handed to the owner, which keeps the last good list.
	// (Replaced whole, so the feed never reads a half-written file that happens to parse.)
	if err := store.WriteFile(file, []byte("203.0.113.0/28\nthis is not an address\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, evs, func(e events.Event) bool { return e.Kind == "sipguard.feed" && e.Severity == events.Warn })
	_, _, calls := fw.feed("text")
	for failed := 1; failed < 3; {
		e := waitEvent(t, evs, func(e events.Event) bool { return e.Kind == "sipguard.feed" })
		if e.Severity != events.Warn {
			t.Fatalf("after the file went bad: %+v", e)
		}
		failed++
	}
	if got, _, n := fw.feed("text"); n != calls || len(got) != 2 {
		t.Errorf("failed loads called SetFeed %d times (list %v); want none", n-calls, got)
	}
	stopFeed()
	waitClosed(t, "RunFeed to return", done)
}

// A feed server that never answers delays only its own feed: each load times out and is
// reported, and RunFeed returns as soon as its context ends, mid-request.
func TestFeedHungServer(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	fw := newFake()
	bus := events.New(100)
	evs, unsub := bus.Subscribe(100)
	defer unsub()
	for _, client := range []*http.Client{{Timeout: 50 * time.Millisecond}, nil} {
		for len(arrived) > 0 { // from the loads before
			<-arrived
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			RunFeed(ctx, Feed{Name: "hung", URL: srv.URL, Format: "text", Interval: 10 * time.Millisecond}, FeedOptions{Blocker: fw, Bus: bus, Client: client})
			close(done)
		}()
		if client != nil {
			for i := 0; i < 2; i++ {
				waitEvent(t, evs, func(e events.Event) bool { return e.Kind == "sipguard.feed" && e.Severity == events.Warn })
			}
		} else {
			waitClosed(t, "the request to hang", arrived)
		}
		cancel() // without a client timeout: mid-request
		waitClosed(t, "RunFeed to return", done)
	}
	if _, _, n := fw.feed("hung"); n != 0 {
		t.Errorf("SetFeed called %d times for a feed that never loaded", n)
	}
}

// waitEvent returns the first event that ok accepts, failing after a deadline.
func waitEvent(t *testing.T, evs <-chan events.Event, ok func(events.Event) bool) events.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-evs:
			if ok(e) {
				return e
			}
		case <-deadline:
			t.Fatal("timed out waiting for an event")
		}
	}
}

// waitClosed waits for done to be closed or to deliver, failing after a deadline.
func waitClosed(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
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
		g, err := New(Options{Thresholds: testThresholds(), Blocker: fw})
		if err != nil {
			t.Fatal(err)
		}
		// A caller that answered the PBX's challenge: its verdicts escalate.
		g.Handle(time.Now(), udp(attacker, pbx, req("INVITE", "100", "1001", "", "b", 1, "")))
		g.Handle(time.Now(), udp(pbx, attacker, resp(407, "INVITE", "100", "b", 1)))
		for i := 0; i < 20; i++ {
			g.Handle(time.Now(), udp(attacker, pbx, req("INVITE", "+88112345", "1001", "", fmt.Sprint("b", i), 2, "1001")))
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

// Records of trusted peers, admin networks and office hosts (an edited state file), and of
// blocks the owner no longer holds, are dropped at start; nothing is sent to the owner: it
// restores its blocks itself.
func TestProtectedRecordsDropped(t *testing.T) {
	dir := t.TempDir()
	st := `{"blocks":{
 "192.0.2.10/32":{"prefix":"192.0.2.10/32","reason":"scanner","since":"2026-01-01T00:00:00Z","expires":"2999-01-01T00:00:00Z","offense":1},
 "192.168.50.0/24":{"prefix":"192.168.50.0/24","reason":"manual","since":"2026-01-01T00:00:00Z","expires":"0001-01-01T00:00:00Z","offense":1},
 "bad":null,
 "198.51.100.1/32":{"prefix":"198.51.100.1/32","reason":"scanner","since":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","offense":1},
 "203.0.113.9/32":{"prefix":"203.0.113.9/32","reason":"scanner","since":"2026-01-01T00:00:00Z","expires":"2999-01-01T00:00:00Z","offense":1},
 "203.0.113.10/32":{"prefix":"203.0.113.10/32","reason":"scanner","since":"2026-01-01T00:00:00Z","expires":"2999-01-01T00:00:00Z","offense":1}},
 "offenses":{"198.51.100.1/32":{"n":1,"last":"2026-01-01T00:00:00Z"}}}`
	if err := os.WriteFile(filepath.Join(dir, "blocks.json"), []byte(st), 0o600); err != nil {
		t.Fatal(err)
	}
	fw := newFake()
	// What the owner protects: the trusted peer and the office LAN.
	fw.protected = []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("192.168.50.0/24")}
	// The owner restored its own list: 203.0.113.9 is in it, 203.0.113.10 was unblocked
	// while sipguard was not running.
	kept := netip.MustParsePrefix("203.0.113.9/32")
	if _, err := fw.Block(netcfg.BlockRequest{Prefix: kept, Source: netcfg.SourceSIPGuard, By: "scanner", For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	fw.blocks = 0
	g, _, _ := newTestGuard(t, fw, dir)
	waitUntil(t, "only 203.0.113.9/32 listed", func() bool {
		l := g.Blocked()
		return len(l) == 1 && l[0].Prefix == kept && l[0].InKernel
	})
	if fw.blocks != 0 {
		t.Errorf("%d block requests at start", fw.blocks)
	}
	if _, ok := g.st.Offenses["198.51.100.1/32"]; !ok {
		t.Error("the offense of an expired block was not kept")
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
	g, err := New(Options{Thresholds: testThresholds(), Blocker: newFake()})
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
	g, err := New(Options{Thresholds: testThresholds(), Blocker: newFake()})
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
	g, err := New(Options{Thresholds: testThresholds(), Blocker: newFake(), StateDir: t.TempDir()})
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
	g, err := New(Options{Thresholds: testThresholds(), Blocker: newFake(), StateDir: dir})
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
	g, err := New(Options{Thresholds: testThresholds(), Blocker: newFake()})
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

// A blocked source that a reload makes a trusted peer (sipguard's, or one the owner now
// protects) is unblocked at once.
func TestReloadTrustingUnblocks(t *testing.T) {
	net := netip.MustParsePrefix("192.0.2.64/30")
	for _, how := range []string{"trusted peer", "owner protects"} {
		t.Run(how, func(t *testing.T) {
			fw := newFake()
			g, _, _ := newTestGuard(t, fw, t.TempDir())
			g.Handle(time.Now(), udp(attacker, pbx, req("OPTIONS", "100", "sipvicious", "friendly-scanner", "s1", 1, "")))
			waitUntil(t, "block", func() bool { _, ok := fw.get("192.0.2.66/32"); return ok })
			th := testThresholds()
			if how == "trusted peer" {
				th.Trusted = []netip.Prefix{net}
			} else {
				fw.mu.Lock()
				fw.protected = []netip.Prefix{net}
				fw.mu.Unlock()
			}
			g.SetThresholds(th)
			if _, ok := fw.get("192.0.2.66/32"); ok {
				t.Error("still blocked after it became a trusted peer")
			}
			if l := g.Blocked(); len(l) != 0 {
				t.Errorf("still listed: %+v", l)
			}
		})
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
	g, err := New(Options{Thresholds: testThresholds(), Blocker: fw})
	if err != nil {
		t.Fatal(err)
	}
	provenScan(g, attacker, "s1")
	g.act(context.Background(), <-g.acts)
	fw.mu.Lock()
	fw.fail = false
	fw.mu.Unlock()
	g.Handle(time.Now(), udp(attacker, pbx, req("REGISTER", "100", "100", "friendly-scanner", "s1", 3, "100")))
	if len(g.acts) != 1 {
		t.Fatal("the source's next packet raised nothing after the failed block")
	}
	g.act(context.Background(), <-g.acts)
	if d, ok := fw.get("192.0.2.66/32"); !ok || d != time.Hour {
		t.Errorf("blocked %v for %s, want a first offense's hour", ok, d)
	}
}
