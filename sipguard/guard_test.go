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
	"github.com/officeedge/appliance/netcfg"
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

// udp wraps a SIP payload in IPv4/UDP headers.
func udp(src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, 28, 28+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(28+len(payload)))
	b[8], b[9] = 64, 17
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(b[20:], 5060)
	binary.BigEndian.PutUint16(b[22:], 5060)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	return append(b, payload...)
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
	g, _, cancel := newTestGuard(t, fw, filepath.Join(dir, "state"))
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
	os.WriteFile(file, []byte("203.0.113.0/28\nthis is not an address\n"), 0o600)
	time.Sleep(100 * time.Millisecond) // a few intervals of failed loads
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
	defer stop2()
	go g2.RunFeed(ctx2, Feed{Name: "text", File: file, Format: "text", Interval: time.Hour}, nil)
	waitUntil(t, "saved feed", func() bool { _, ok := fw2.get("203.0.113.0/28"); return ok })
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
