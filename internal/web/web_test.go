package web

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
	"github.com/officeedge/appliance/wan"
)

// fakeOwner is a blocklist owner in memory: it merges claims by source, refuses protected
// and too wide networks, and wakes its watchers after each change, as netcfg.Owner does.
type fakeOwner struct {
	mu        sync.Mutex
	now       func() time.Time
	entries   map[netip.Prefix]netcfg.Entry
	feeds     []netcfg.FeedInfo
	kernel    netcfg.BlockCounts
	packets   map[netip.Prefix]uint64
	protected []netcfg.Protection
	watch     chan struct{}
}

func newFakeOwner(now func() time.Time) *fakeOwner {
	return &fakeOwner{now: now, entries: map[netip.Prefix]netcfg.Entry{}, packets: map[netip.Prefix]uint64{}, watch: make(chan struct{}, 1),
		protected: []netcfg.Protection{{Prefix: netip.MustParsePrefix("192.0.2.0/28"), Why: "trusted SIP peer acme_trunk"}}}
}

func (f *fakeOwner) State() *netcfg.BlockState {
	f.mu.Lock()
	defer f.mu.Unlock()
	bs := &netcfg.BlockState{Feeds: slices.Clone(f.feeds), Kernel: f.kernel, Widest4: 16, Widest6: 32}
	for _, e := range f.entries {
		bs.Entries = append(bs.Entries, e)
	}
	slices.SortFunc(bs.Entries, func(a, b netcfg.Entry) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return bs
}

func (f *fakeOwner) Block(r netcfg.BlockRequest) (netcfg.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.protected {
		if p.Prefix.Overlaps(r.Prefix) {
			return netcfg.Entry{}, &netcfg.ProtectedError{Prefix: r.Prefix, By: p}
		}
	}
	if r.Prefix.Addr().Is4() && r.Prefix.Bits() < 16 && !r.Force {
		return netcfg.Entry{}, &netcfg.TooWideError{Prefix: r.Prefix, Widest: 16}
	}
	c := netcfg.Claim{Source: r.Source, By: r.By, Reason: r.Reason, Since: f.now()}
	if r.For > 0 {
		c.Until = c.Since.Add(r.For)
	}
	e := f.entries[r.Prefix]
	e.Prefix = r.Prefix
	e.Claims = append(slices.DeleteFunc(e.Claims, func(o netcfg.Claim) bool { return o.Source == r.Source }), c)
	f.entries[r.Prefix] = e
	f.poke()
	return e, nil
}

func (f *fakeOwner) Unblock(p netip.Prefix, by string) (netcfg.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[p]
	if !ok {
		return netcfg.Entry{}, fmt.Errorf("%s is not blocked", p)
	}
	delete(f.entries, p)
	f.poke()
	return e, nil
}

func (f *fakeOwner) Packets() map[netip.Prefix]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.packets)
}

func (f *fakeOwner) Watch() (<-chan struct{}, func()) { return f.watch, func() {} }

func (f *fakeOwner) poke() {
	select {
	case f.watch <- struct{}{}:
	default:
	}
}

// set changes the owner's state as its loop would, and wakes the watchers.
func (f *fakeOwner) set(fn func(f *fakeOwner)) {
	f.mu.Lock()
	fn(f)
	f.poke()
	f.mu.Unlock()
}

// fakeWAN is the wan's status as a test sets it; Force records the modes it is given.
type fakeWAN struct {
	mu     sync.Mutex
	st     wan.Status
	on     bool
	forced []wan.Mode
}

func (w *fakeWAN) status() (wan.Status, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st, w.on
}

func (w *fakeWAN) force(_ context.Context, m wan.Mode) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.forced = append(w.forced, m)
	w.st.Mode = m
	return nil
}

func (w *fakeWAN) set(fn func(st *wan.Status)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(&w.st)
}

// healthy is both uplinks up, on the fixed line.
func healthy(now time.Time) wan.Status {
	up := func(r wan.Role, name, ifn string, rtt time.Duration) wan.UplinkStatus {
		return wan.UplinkStatus{Role: r, Name: name, Interface: ifn, Carrier: true, State: wan.Up, Since: now.Add(-time.Hour), Reason: "all targets answer",
			Targets: []wan.TargetStats{{Target: "icmp:192.0.2.53", Sent: 20, RTT: rtt}, {Target: "tcp:192.0.2.80:80", Sent: 20, RTT: rtt + 2*time.Millisecond}}}
	}
	return wan.Status{Active: wan.Primary, Mode: wan.Auto, Uplinks: []wan.UplinkStatus{up(wan.Primary, "FTTC", "eth1", 9*time.Millisecond), up(wan.Backup, "LTE", "usb0", 48*time.Millisecond)}}
}

// failover is the fixed line down and the modem carrying traffic, with the wan's history.
func failover(st *wan.Status, at time.Time) {
	st.Active = wan.Backup
	st.Uplinks[0].State, st.Uplinks[0].Since, st.Uplinks[0].Reason = wan.Down, at, "no target answered 5 probes in a row"
	st.Uplinks[0].Targets[0].LossPct, st.Uplinks[0].Targets[1].LossPct = 100, 100
	st.Uplinks[1].Targets[0].RTT, st.Uplinks[1].Targets[0].LossPct = 48500*time.Microsecond, 4
	st.Events = append(st.Events,
		events.Event{Time: at, Kind: "uplink.down", Severity: events.Alert, Source: "wan", Message: "uplink FTTC (eth1) is down"},
		events.Event{Time: at, Kind: "wan.failover", Severity: events.Warn, Source: "wan", Message: "failover: traffic moved from FTTC to LTE"})
	st.Trunks = []wan.TrunkStatus{{Name: "acme", Target: "192.0.2.10:5060", State: wan.Up, RTT: 21 * time.Millisecond, Via: "backup", Since: at}}
}

type fakeBoard struct {
	panel   *hal.Panel
	mu      sync.Mutex
	presses int
}

func (b *fakeBoard) Name() string             { return "sim" }
func (b *fakeBoard) LEDs() []hal.LEDState     { return b.panel.LEDs() }
func (b *fakeBoard) Changed() <-chan struct{} { return b.panel.Changed() }
func (b *fakeBoard) Press(long bool) error {
	b.mu.Lock()
	b.presses++
	b.mu.Unlock()
	return nil
}

type env struct {
	s      *Server
	bus    *events.Bus
	owner  *fakeOwner
	wan    *fakeWAN
	alerts *alerts.Store
	board  *fakeBoard
	guard  []sipguard.Entry
	audit  *audit.Log
	dir    string
	now    time.Time
}

func newEnv(t testing.TB) *env {
	t.Helper()
	cfg, err := config.Parse("example.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web.MaxFailures, cfg.Web.Lockout = 3, time.Minute
	e := &env{bus: events.New(100), dir: t.TempDir(), now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return e.now }
	e.owner, e.alerts = newFakeOwner(clock), alerts.New(clock)
	e.wan = &fakeWAN{st: healthy(e.now), on: true}
	e.board = &fakeBoard{panel: hal.New(clock, 0)}
	e.audit = audit.Open(filepath.Join(e.dir, "audit.log"))
	e.s = New(Options{
		Config: func() *config.Config { return cfg }, Bus: e.bus, WAN: e.wan.status, Blocklist: e.owner,
		Actions: &control.Actions{WAN: e.wan.status, Force: e.wan.force, Blocklist: e.owner, Alerts: e.alerts, Press: e.board.Press, Audit: e.audit, Bus: e.bus},
		Guard: func() (sipguard.Stats, int, bool) {
			st := sipguard.Stats{Packets: 9000, SIP: 8000, Findings: 12, Blocks: 3}
			st.Detections[sipguard.KindScanner] = 2
			return st, 41, true
		},
		GuardEntries: func() []sipguard.Entry { return e.guard },
		Alerts:       e.alerts, Audit: e.audit, Board: e.board, StateDir: e.dir, Now: clock,
		ReadFirewall: func() FirewallState {
			return FirewallState{Loaded: true, Table: "inet appliance", Rules: 1, Hits: []RuleHits{{Chain: "input", Handle: 7, Comment: "blocked address", Packets: 42, Bytes: 4200}}}
		},
		ReadDropped: func(int) ([]netcfg.DroppedWindow, error) {
			return []netcfg.DroppedWindow{{Window: "hour", Seen: 1, Sources: []netcfg.DroppedCount{{Key: "192.0.2.66", Packets: 5}}}}, nil
		},
	})
	return e
}

// req makes a request over HTTPS as if from addr (the page decides by the TCP peer's address).
func (e *env) req(method, path, from string, body string, hdr map[string]string) *httptest.ResponseRecorder {
	return e.reqURL(method, "https://192.168.1.1"+path, from, body, hdr)
}

// plain makes a request over plain HTTP as if from addr.
func (e *env) plain(method, path, from string, body string, hdr map[string]string) *httptest.ResponseRecorder {
	return e.reqURL(method, "http://192.168.1.1"+path, from, body, hdr)
}

// reqURL makes a request as if from addr; an https URL makes it one over TLS.
func (e *env) reqURL(method, url, from string, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, url, strings.NewReader(body))
	r.RemoteAddr = from + ":50000"
	if strings.Contains(from, ":") {
		r.RemoteAddr = "[" + from + "]:50000"
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if k == "Host" {
			r.Host = v
		}
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.s.Handler().ServeHTTP(w, r)
	return w
}

// status reads /api/status from the LAN.
func (e *env) status(t *testing.T) Status {
	t.Helper()
	w := e.req("GET", "/api/status", lan, "", nil)
	if w.Code != 200 {
		t.Fatalf("status from the LAN: %d %s", w.Code, w.Body)
	}
	var st Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func uplink(st Status, role string) UplinkView {
	for _, u := range st.Uplinks {
		if u.Role == role {
			return u
		}
	}
	return UplinkView{}
}

func blocked(st Status, addr string) *BlockedView {
	for i := range st.Blocklist.Entries {
		if st.Blocklist.Entries[i].Addr == addr {
			return &st.Blocklist.Entries[i]
		}
	}
	return nil
}

const lan = "192.168.1.20"

// The API says what the parts' snapshots say: an uplink down and the failover, a block with
// its source and expiry, a community list's line, sipguard's counters, an alert.
func TestStatusAPI(t *testing.T) {
	e := newEnv(t)
	e.wan.set(func(st *wan.Status) { failover(st, e.now.Add(-time.Minute)) })
	attacker := netip.MustParsePrefix("198.51.100.66/32")
	e.owner.set(func(f *fakeOwner) {
		f.entries[attacker] = netcfg.Entry{Prefix: attacker, Claims: []netcfg.Claim{{Source: netcfg.SourceSIPGuard, By: "scanner", Reason: "scanner",
			Since: e.now.Add(-10 * time.Minute), Until: e.now.Add(50 * time.Minute)}}}
		f.packets[attacker] = 1200
		f.feeds = []netcfg.FeedInfo{{Name: "apiban", Entries: 51234, Refused: 2, Loaded: e.now.Add(-time.Hour), Until: e.now.Add(23 * time.Hour)}}
		f.kernel = netcfg.BlockCounts{Addrs4: 51000, Addrs6: 35, Nets4: 200}
	})
	e.guard = []sipguard.Entry{{Prefix: attacker, Reason: "scanner", Detail: "friendly-scanner", Since: e.now.Add(-10 * time.Minute), Offense: 2}}
	e.alerts.Raise("part.sipguard", "daemon", "sipguard restarted after: capture: interface eth0 vanished")

	st := e.status(t)
	if st.Version == "" || st.BuildTime == "" || st.Site != "Example Office" || !st.Firewall.Loaded || st.Firewall.Table != "inet appliance" || st.Firewall.Rules != 1 {
		t.Errorf("status basics: %+v", st)
	}
	if st.Active != "LTE" || st.Mode != "auto" || st.BothDown || len(st.WANEvents) != 2 || st.WANEvents[0].Kind != "wan.failover" {
		t.Errorf("active %q mode %q, wan events %+v; want LTE after a failover, newest first", st.Active, st.Mode, st.WANEvents)
	}
	fttc, lte := uplink(st, "primary"), uplink(st, "backup")
	if fttc.State != "down" || fttc.Active || fttc.Reason == "" || fttc.Loss != 100 {
		t.Errorf("FTTC uplink = %+v, want down with its reason", fttc)
	}
	if lte.State != "up" || !lte.Active || lte.RTT != 48.5 || lte.Loss != 2 || len(lte.Targets) != 2 {
		t.Errorf("LTE uplink = %+v, want up, carrying traffic, best RTT 48.5 ms, loss 2%%", lte)
	}
	if len(st.Trunks) != 1 || st.Trunks[0].State != "up" || st.Trunks[0].Via != "backup" {
		t.Errorf("trunks = %+v", st.Trunks)
	}

	bl := st.Blocklist
	b := blocked(st, "198.51.100.66")
	if !bl.Available || bl.Total != 1 || b == nil {
		t.Fatalf("blocklist = %+v", bl)
	}
	if !slices.Equal(b.Sources, []string{"sipguard"}) || b.Reason != "scanner" || b.Detail != "friendly-scanner" || b.Offense != 2 ||
		!b.Until.Equal(e.now.Add(50*time.Minute)) || b.Remaining != "50m0s" || b.Packets == nil || *b.Packets != 1200 || b.Evidence {
		t.Errorf("blocked entry = %+v", b)
	}
	if len(bl.Feeds) != 1 || bl.Feeds[0].Name != "apiban" || bl.Feeds[0].Entries != 51234 || bl.Kernel.Total != 51235 || bl.Kernel.Addrs6 != 35 {
		t.Errorf("feeds %+v kernel %+v", bl.Feeds, bl.Kernel)
	}
	if st.SIPGuard == nil || st.SIPGuard.Packets != 9000 || st.SIPGuard.Sources != 41 {
		t.Errorf("sipguard = %+v", st.SIPGuard)
	}
	if len(st.Alerts) != 1 || st.Alerts[0].Key != "part.sipguard" || st.Alerts[0].Source != "daemon" || st.Alerts[0].Count != 1 || st.Unacked != 1 {
		t.Errorf("alerts %+v unacked %d", st.Alerts, st.Unacked)
	}
	if len(st.LEDs) != 3 || st.Board != "sim" {
		t.Errorf("board %q LEDs %v", st.Board, st.LEDs)
	}
	var email *Check
	for i := range st.Checklist {
		if st.Checklist[i].ID == "email" {
			email = &st.Checklist[i]
		}
	}
	if email == nil || email.Result != "fail" || email.Fix == "" {
		t.Errorf("checklist email item = %+v, want a failure saying what to do", email)
	}

	// From the admin network: served; from anywhere else: refused.
	if w := e.req("GET", "/api/status", "203.0.113.200", "", nil); w.Code != 200 {
		t.Errorf("status from the admin network: %d", w.Code)
	}
	if w := e.req("GET", "/api/status", "198.18.0.9", "", nil); w.Code != 403 {
		t.Errorf("status from outside: %d, want 403", w.Code)
	}
	// A page elsewhere that rebinds its DNS name to the box cannot read it.
	if w := e.req("GET", "/api/status", lan, "", map[string]string{"Host": "attacker.example"}); w.Code != http.StatusMisdirectedRequest {
		t.Errorf("status under a foreign host name: %d, want 421", w.Code)
	}
	if w := e.req("GET", "/", lan, "", nil); w.Code != 200 || !strings.Contains(w.Body.String(), "/static/app.js") || !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("page: %d, CSP %q", w.Code, w.Header().Get("Content-Security-Policy"))
	}
	m := e.req("GET", "/metrics", lan, "", nil).Body.String()
	for _, want := range []string{
		`appliance_firewall_rule_packets_total{chain="input",rule="blocked address"} 42`,
		`appliance_firewall_dropped_sources{window="hour"} 1`,
		`appliance_sipguard_detections_total{detector="scanner"} 2`,
		`appliance_sipguard_detections_total{detector="brute-force"} 0`,
		`appliance_uplink_active{role="backup",uplink="LTE"} 1`,
		`appliance_uplink_up{role="primary",uplink="FTTC"} 0`,
		`appliance_blocked_addresses 1`,
		`appliance_blocklist_kernel_entries{set="block4"} 51000`,
		`appliance_blocklist_kernel_entries{set="blocknet4"} 200`,
		`appliance_blocklist_feed_entries{feed="apiban"} 51234`,
		`appliance_sipguard_packets_total 9000`,
		`appliance_sipguard_blocks_total 3`,
		`appliance_sipguard_sources 41`,
		`appliance_alerts_unacknowledged 1`,
		`appliance_alerts_active 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The checklist's feed item says whether each configured community list is in force.
func TestFeedsCheck(t *testing.T) {
	e := newEnv(t)
	feeds := func() Check {
		for _, c := range e.status(t).Checklist {
			if c.ID == "feeds" {
				return c
			}
		}
		return Check{}
	}
	if c := feeds(); c.Result != "fail" || c.Fix == "" {
		t.Errorf("no feed configured: %+v", c)
	}
	e.s.o.Config().SIPGuard.Feeds = []config.SIPFeed{{Name: "apiban"}}
	if c := feeds(); c.Result != "fail" || !strings.Contains(c.Detail, "not loaded yet: apiban") {
		t.Errorf("a feed not loaded: %+v", c)
	}
	e.owner.set(func(f *fakeOwner) { f.feeds = []netcfg.FeedInfo{{Name: "apiban", Entries: 812, Loaded: e.now}} })
	if c := feeds(); c.Result != "ok" || !strings.Contains(c.Detail, "812 entries") {
		t.Errorf("a feed in force: %+v", c)
	}
}

// Without a wan the page says failover is off, and forcing is refused.
func TestWANOff(t *testing.T) {
	e := newEnv(t)
	e.wan.on = false
	st := e.status(t)
	if st.Mode != "off" || st.Active != "" || len(st.Uplinks) != 2 || uplink(st, "backup").State != "unknown" {
		t.Errorf("wan off: mode %q active %q uplinks %+v", st.Mode, st.Active, st.Uplinks)
	}
	ok := loggedIn(t, e)
	if w := e.req("POST", "/api/uplink/force", lan, `{"mode":"backup"}`, ok); w.Code != http.StatusServiceUnavailable {
		t.Errorf("force without a wan: %d %s", w.Code, w.Body)
	}
}

func login(t *testing.T, e *env, from, pw string, hdr map[string]string) *httptest.ResponseRecorder {
	b, _ := json.Marshal(map[string]string{"password": pw})
	return e.req("POST", "/api/login", from, string(b), hdr)
}

// loggedIn sets a password, logs in from the LAN and returns the headers of an action.
func loggedIn(t *testing.T, e *env) map[string]string {
	t.Helper()
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	w := login(t, e, lan, "correct horse", nil)
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	var lr struct{ CSRF string }
	_ = json.Unmarshal(w.Body.Bytes(), &lr)
	c := w.Result().Cookies()[0]
	return map[string]string{"Cookie": c.Name + "=" + c.Value, "X-CSRF-Token": lr.CSRF, "Origin": "https://192.168.1.1"}
}

func TestAuthRules(t *testing.T) {
	e := newEnv(t)
	if w := login(t, e, lan, "whatever1", nil); w.Code != 503 {
		t.Errorf("login with no password set: %d, want 503", w.Code)
	}
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if b, _ := readFile(filepath.Join(e.dir, PasswordFile)); strings.Contains(b, "correct horse") || !strings.HasPrefix(b, "$argon2id$") {
		t.Fatalf("password file holds %q, want an argon2id hash", b)
	}

	// Outside the LAN and admin networks even the right password is refused.
	if w := login(t, e, "198.18.0.9", "correct horse", nil); w.Code != 403 {
		t.Errorf("login from outside: %d, want 403", w.Code)
	}
	// A login posted by another site's page.
	if w := login(t, e, lan, "correct horse", map[string]string{"Origin": "http://evil.example"}); w.Code != 403 {
		t.Errorf("login with a foreign Origin: %d, want 403", w.Code)
	}
	// A plain HTML form (no JSON) cannot log in.
	r := e.req("POST", "/api/login", lan, "password=correct+horse", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if r.Code != 400 {
		t.Errorf("form login: %d, want 400", r.Code)
	}

	// A page of the same host over plain HTTP could have been changed on its way.
	if w := login(t, e, lan, "correct horse", map[string]string{"Origin": "http://192.168.1.1"}); w.Code != 403 {
		t.Errorf("login with a plain HTTP Origin: %d, want 403", w.Code)
	}
	w := login(t, e, lan, "correct horse", map[string]string{"Origin": "https://192.168.1.1"})
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	cookie := w.Result().Cookies()[0]
	if !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode || !strings.HasPrefix(cookie.Name, "__Host-") || cookie.Path != "/" {
		t.Errorf("cookie %+v: want Secure, HttpOnly, SameSite=Strict, __Host-, Path=/", cookie)
	}
	var lr struct{ CSRF string }
	json.Unmarshal(w.Body.Bytes(), &lr)
	sess := map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range sess {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}

	// Actions: no session, no CSRF token, wrong token, wrong origin — all refused.
	force := `{"mode":"backup"}`
	if w := e.req("POST", "/api/uplink/force", lan, force, nil); w.Code != 401 {
		t.Errorf("action without login: %d, want 401", w.Code)
	}
	if w := e.req("POST", "/api/uplink/force", lan, force, with(nil)); w.Code != 403 {
		t.Errorf("action without CSRF token: %d, want 403", w.Code)
	}
	if w := e.req("POST", "/api/uplink/force", lan, force, with(map[string]string{"X-CSRF-Token": "nope"})); w.Code != 403 {
		t.Errorf("action with a wrong CSRF token: %d, want 403", w.Code)
	}
	if w := e.req("POST", "/api/uplink/force", lan, force, with(map[string]string{"X-CSRF-Token": lr.CSRF, "Origin": "http://evil.example"})); w.Code != 403 {
		t.Errorf("action from another origin: %d, want 403", w.Code)
	}
	if len(e.wan.forced) != 0 {
		t.Fatalf("a refused action reached the wan: %v", e.wan.forced)
	}
	ok := with(map[string]string{"X-CSRF-Token": lr.CSRF, "Origin": "https://192.168.1.1"})
	if w := e.req("POST", "/api/uplink/force", lan, force, ok); w.Code != 200 || !slices.Equal(e.wan.forced, []wan.Mode{wan.ForceBackup}) {
		t.Errorf("force backup: %d %s, wan got %v", w.Code, w.Body, e.wan.forced)
	}
	if w := e.req("POST", "/api/uplink/force", lan, `{"mode":"sideways"}`, ok); w.Code != 400 {
		t.Errorf("force of an unknown mode: %d, want 400", w.Code)
	}
	if w := e.req("POST", "/api/block", lan, `{"addr":"198.51.100.77","for":"1h"}`, ok); w.Code != 200 {
		t.Errorf("block: %d %s", w.Code, w.Body)
	}
	if w := e.req("POST", "/api/block", lan, `{"addr":"not-an-ip"}`, ok); w.Code != 400 {
		t.Errorf("block of garbage: %d, want 400", w.Code)
	}
	if w := e.req("POST", "/api/unblock", lan, `{"addr":"198.51.100.77"}`, ok); w.Code != 200 {
		t.Errorf("unblock: %d %s", w.Code, w.Body)
	}
	if w := e.req("POST", "/api/alerts/ack", lan, `{}`, ok); w.Code != 200 {
		t.Errorf("ack: %d", w.Code)
	}
	if w := e.req("POST", "/api/button", lan, `{"long":false}`, ok); w.Code != 202 {
		t.Errorf("button: %d", w.Code)
	}
	// Every action is in the audit log with who and from where; the CSV export needs a login.
	es, _ := e.audit.Entries()
	var whats []string
	for _, a := range es {
		if a.From != lan || a.Who != "admin" || a.Via != "web" {
			t.Errorf("audit entry %+v: want admin from %s via web", a, lan)
		}
		whats = append(whats, a.What)
	}
	if got := strings.Join(whats, ","); got != "login,uplink.force,block,unblock,alert.acknowledge,button.press" {
		t.Errorf("audited %s", got)
	}
	if w := e.req("GET", "/api/audit.csv", lan, "", nil); w.Code != 401 {
		t.Errorf("CSV without login: %d", w.Code)
	}
	if w := e.req("GET", "/api/audit.csv", lan, "", sess); w.Code != 200 || !strings.Contains(w.Body.String(), "uplink.force,auto,backup") {
		t.Errorf("CSV: %d %s", w.Code, w.Body)
	}

	// Lockout: after 3 wrong passwords from an address, even the right one is refused there
	// (but not from another address), until the lockout ends.
	other := "192.168.1.30"
	for i := 1; i <= 3; i++ {
		w := login(t, e, other, "wrong password", nil)
		if want := map[bool]int{true: 429, false: 401}[i == 3]; w.Code != want {
			t.Errorf("wrong password #%d: %d, want %d", i, w.Code, want)
		}
	}
	if w := login(t, e, other, "correct horse", nil); w.Code != 429 {
		t.Errorf("right password while locked out: %d, want 429", w.Code)
	}
	if w := login(t, e, lan, "correct horse", nil); w.Code != 200 {
		t.Errorf("right password from another address: %d, want 200", w.Code)
	}
	e.now = e.now.Add(2 * time.Minute)
	if w := login(t, e, other, "correct horse", nil); w.Code != 200 {
		t.Errorf("right password after the lockout: %d, want 200", w.Code)
	}
}

// A block from the page is a manual claim with who made it, from where, and until when; the
// page lists it; a refusal reaches the person with the owner's reason.
func TestBlockFromPage(t *testing.T) {
	e := newEnv(t)
	ok := loggedIn(t, e)
	if w := e.req("POST", "/api/block", lan, `{"addr":"198.51.100.77","for":"24h"}`, ok); w.Code != 200 {
		t.Fatalf("block: %d %s", w.Code, w.Body)
	}
	c := e.owner.State().Entries[0].Claims[0]
	if c.Source != netcfg.SourceManual || c.By != "admin (web "+lan+")" || c.Reason != "blocked on the status page" || !c.Until.Equal(e.now.Add(24*time.Hour)) {
		t.Errorf("the owner got the claim %+v", c)
	}
	b := blocked(e.status(t), "198.51.100.77")
	if b == nil || !slices.Equal(b.Sources, []string{"manual"}) || b.Remaining != "24h0m0s" || b.Claims[0].By != "admin (web "+lan+")" || b.Packets != nil {
		t.Errorf("the page lists %+v", b)
	}

	// A trusted peer's network: refused with the rule that protects it.
	w := e.req("POST", "/api/block", lan, `{"addr":"192.0.2.5"}`, ok)
	var msg struct{ Error string }
	_ = json.Unmarshal(w.Body.Bytes(), &msg)
	if w.Code != http.StatusConflict || !strings.Contains(msg.Error, "trusted SIP peer acme_trunk") {
		t.Errorf("block of a trusted peer: %d %q, want 409 naming the rule", w.Code, msg.Error)
	}
	w = e.req("POST", "/api/block", lan, `{"addr":"10.0.0.0/8"}`, ok)
	_ = json.Unmarshal(w.Body.Bytes(), &msg)
	if w.Code != http.StatusConflict || !strings.Contains(msg.Error, "wider than /16") {
		t.Errorf("block of a /8: %d %q, want 409 with the limit", w.Code, msg.Error)
	}
	if w := e.req("POST", "/api/block", lan, `{"addr":"198.51.100.78","for":"-1h"}`, ok); w.Code != 400 {
		t.Errorf("block for a negative time: %d, want 400", w.Code)
	}
	if len(e.owner.State().Entries) != 1 {
		t.Errorf("refused blocks reached the blocklist: %+v", e.owner.State().Entries)
	}
	if w := e.req("POST", "/api/unblock", lan, `{"addr":"198.51.100.9"}`, ok); w.Code != http.StatusConflict {
		t.Errorf("unblock of what is not blocked: %d", w.Code)
	}
	es, _ := e.audit.Entries()
	if last := es[len(es)-1]; last.What != "block" || last.After != "198.51.100.77 for 24h0m0s (blocked on the status page)" {
		t.Errorf("last audit entry %+v, want only the block that happened", last)
	}
}

// The page lists the alerts and acknowledges them, audited with what was acknowledged.
func TestAlertsAcknowledge(t *testing.T) {
	e := newEnv(t)
	e.alerts.Raise(alerts.KeyHALBoard, "hal", "LEDs and button unavailable: no /dev/gpiochip0")
	e.alerts.Raise("firewall.drift", "netcfg", "the kernel's table was changed")
	e.alerts.Clear("firewall.drift")
	st := e.status(t)
	if st.Unacked != 2 || len(st.Alerts) != 2 || st.Alerts[0].Key != alerts.KeyHALBoard || !st.Alerts[0].Active || st.Alerts[1].Active {
		t.Fatalf("alerts %+v unacked %d, want the active one first", st.Alerts, st.Unacked)
	}
	ok := loggedIn(t, e)
	if w := e.req("POST", "/api/alerts/ack", lan, `{}`, ok); w.Code != 200 || !strings.Contains(w.Body.String(), `"acknowledged": 2`) {
		t.Fatalf("ack: %d %s", w.Code, w.Body)
	}
	st = e.status(t)
	if st.Unacked != 0 || len(st.Alerts) != 1 || !st.Alerts[0].Acked || !st.Alerts[0].Active {
		t.Errorf("after acknowledging: %+v, want the active one left, acknowledged", st.Alerts)
	}
	es, _ := e.audit.Entries()
	if last := es[len(es)-1]; last.What != "alert.acknowledge" || last.Before != "hal.board, firewall.drift" {
		t.Errorf("audited %+v", last)
	}
	if m := e.req("GET", "/metrics", lan, "", nil).Body.String(); !strings.Contains(m, "appliance_alerts_unacknowledged 0") {
		t.Error("/metrics still counts acknowledged alerts")
	}
}

// statusStream opens the page's event stream; next returns the next status pushed.
func statusStream(t *testing.T, ctx context.Context, e *env) (next func() Status) {
	t.Helper()
	srv := httptest.NewTLSServer(e.s.Handler())
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	return func() Status {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				var st Status
				if err := json.Unmarshal([]byte(d), &st); err != nil {
					t.Fatal(err)
				}
				return st
			}
		}
	}
}

// waitStream reads the stream until a status satisfies ok, failing after a deadline. The
// stream's own 5 s refresh is longer than the deadline: only a wake-up passes in time.
func waitStream(t *testing.T, next func() Status, what string, ok func(Status) bool) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if ok(next()) {
			return
		}
	}
	t.Fatalf("the stream never showed %s", what)
}

// The page's event stream pushes a new status when a part's state changes: a wan event (a
// wake-up: the state is read from the wan), a block (the owner's watch), an alert.
func TestEventStream(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.s.Run(ctx)
	next := statusStream(t, ctx, e)
	if st := next(); st.Active != "FTTC" {
		t.Fatalf("first status: active %q", st.Active)
	}
	e.wan.set(func(st *wan.Status) { failover(st, e.now) })
	e.bus.Publish(events.Event{Kind: "wan.failover", Message: "to LTE"})
	waitStream(t, next, "the failover", func(st Status) bool { return st.Active == "LTE" })

	e.owner.set(func(f *fakeOwner) {
		p := netip.MustParsePrefix("198.51.100.66/32")
		f.entries[p] = netcfg.Entry{Prefix: p, Claims: []netcfg.Claim{{Source: netcfg.SourceSIPGuard, Reason: "flood", Since: e.now}}}
	})
	waitStream(t, next, "the block", func(st Status) bool { return blocked(st, "198.51.100.66") != nil })

	e.alerts.Raise("part.wan", "daemon", "wan restarted")
	waitStream(t, next, "the alert", func(st Status) bool { return st.Unacked == 1 })
}

// A page that stops reading its event stream does not hold a stream forever: the write
// times out and the stream's slot is freed, while its connection is still open.
func TestEventStreamStalledClient(t *testing.T) {
	e := newEnv(t)
	defer func(d time.Duration) { sseWriteTimeout = d }(sseWriteTimeout)
	sseWriteTimeout = 200 * time.Millisecond
	// Big snapshots, so that a few of them fill the socket buffers.
	for i := 0; i < 50; i++ {
		e.bus.Publish(events.Event{Kind: "test.big", Message: strings.Repeat("x", 64<<10)})
	}
	srv := httptest.NewTLSServer(e.s.Handler())
	defer srv.Close()
	raw, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.(*net.TCPConn).SetReadBuffer(4096)
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) // the test server's own certificate
	if _, err := conn.Write([]byte("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	streams := func() int {
		e.s.mu.Lock()
		defer e.s.mu.Unlock()
		return len(e.s.clients)
	}
	deadline := time.Now().Add(20 * time.Second)
	for streams() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if streams() != 1 {
		t.Fatal("the event stream never opened")
	}
	for streams() != 0 && time.Now().Before(deadline) {
		e.s.Changed()
		time.Sleep(50 * time.Millisecond)
	}
	if n := streams(); n != 0 {
		t.Fatalf("%d stream(s) still held by a client that reads nothing", n)
	}
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}

// sipguard's evidence pcap and abuse report for a blocked address are served to a logged-in
// admin, and never a file outside the state directory. A block by hand gets a report made
// from the blocklist's entry.
func TestEvidenceAndReport(t *testing.T) {
	e := newEnv(t)
	ev := filepath.Join(e.dir, "evidence", "x-198.51.100.66.pcapng")
	os.MkdirAll(filepath.Dir(ev), 0o700)
	os.WriteFile(ev, []byte("PCAPNG-BYTES"), 0o600)
	os.WriteFile(strings.TrimSuffix(ev, ".pcapng")+".txt", []byte("To: abuse@example.net\nreport body"), 0o600)
	a, b, m := netip.MustParsePrefix("198.51.100.66/32"), netip.MustParsePrefix("198.51.100.67/32"), netip.MustParsePrefix("198.51.100.0/29")
	e.owner.set(func(f *fakeOwner) {
		for _, p := range []netip.Prefix{a, b} {
			f.entries[p] = netcfg.Entry{Prefix: p, Claims: []netcfg.Claim{{Source: netcfg.SourceSIPGuard, Reason: "scanner", Since: e.now}}}
		}
		f.entries[m] = netcfg.Entry{Prefix: m, Claims: []netcfg.Claim{{Source: netcfg.SourceManual, By: "root (cli)", Reason: "hosting range of the scans", Since: e.now}}}
		f.packets[m] = 77
	})
	e.guard = []sipguard.Entry{
		{Prefix: a, Reason: "scanner", Detail: "friendly-scanner", Since: e.now, Evidence: ev, Report: strings.TrimSuffix(ev, ".pcapng") + ".txt"},
		{Prefix: b, Reason: "flood", Evidence: "/etc/passwd"},
	}

	st := e.status(t)
	if ba, bb := blocked(st, "198.51.100.66"), blocked(st, "198.51.100.67"); ba == nil || bb == nil || !ba.Evidence || bb.Evidence {
		t.Fatalf("blocked = %+v", st.Blocklist.Entries)
	}
	sess := loggedIn(t, e)
	delete(sess, "X-CSRF-Token")
	if w := e.req("GET", "/api/evidence?addr=198.51.100.66", lan, "", nil); w.Code != 401 {
		t.Errorf("evidence without login: %d", w.Code)
	}
	if w := e.req("GET", "/api/evidence?addr=198.51.100.66", lan, "", sess); w.Code != 200 || w.Body.String() != "PCAPNG-BYTES" {
		t.Errorf("evidence: %d %q", w.Code, w.Body)
	}
	if w := e.req("GET", "/api/abuse?addr=198.51.100.66", lan, "", sess); w.Code != 200 || !strings.Contains(w.Body.String(), "abuse@example.net") {
		t.Errorf("report: %d %q", w.Code, w.Body)
	}
	if w := e.req("GET", "/api/evidence?addr=198.51.100.67", lan, "", sess); w.Code != 404 || strings.Contains(w.Body.String(), "root:") {
		t.Errorf("evidence outside the state directory: %d %q", w.Code, w.Body)
	}
	// A symbolic link in the state directory that leads out of it is not followed.
	if err := os.Symlink("/etc", filepath.Join(e.dir, "etc")); err != nil {
		t.Fatal(err)
	}
	e.guard[1].Evidence = filepath.Join(e.dir, "etc", "passwd")
	if w := e.req("GET", "/api/evidence?addr=198.51.100.67", lan, "", sess); w.Code != 404 || strings.Contains(w.Body.String(), "root:") {
		t.Errorf("evidence through a symlink out of the state directory: %d %q", w.Code, w.Body)
	}
	w := e.req("GET", "/api/abuse?addr=198.51.100.0/29", lan, "", sess)
	if body := w.Body.String(); w.Code != 200 || !strings.Contains(body, "Reason: hosting range of the scans") || !strings.Contains(body, "Packets dropped: 77") {
		t.Errorf("report of a block by hand: %d %q", w.Code, body)
	}
	if w := e.req("GET", "/api/abuse?addr=198.51.100.200", lan, "", sess); w.Code != 404 {
		t.Errorf("report of what is not blocked: %d", w.Code)
	}
}

// Wrong passwords sent all at once are counted as they are checked: the lockout bounds the
// guesses however many requests are in flight, and none of the late ones is even checked.
func TestLockoutConcurrent(t *testing.T) {
	e := newEnv(t)
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- login(t, e, lan, "wrong password", nil).Code
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[401] != 2 || count[429] != n-2 {
		t.Errorf("%d wrong passwords at once from one address: answers %v, want 2x401 then 429 (max_failures 3)", n, count)
	}
}

// BenchmarkStatus is the cost of one status snapshot (every open page and every scrape pays
// it), with 5000 blocklist entries (1000 of them shown) and 100 events kept.
func BenchmarkStatus(b *testing.B) {
	e := newEnv(b)
	e.owner.set(func(f *fakeOwner) {
		for i := 0; i < 5000; i++ {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
			f.entries[p] = netcfg.Entry{Prefix: p, Claims: []netcfg.Claim{{Source: netcfg.SourceSIPGuard, Reason: "scanner", Since: e.now.Add(-time.Duration(i) * time.Second)}}}
			f.packets[p] = uint64(i)
		}
	})
	for i := 0; i < 100; i++ {
		e.bus.Publish(events.Event{Kind: "sipguard.block", Message: "blocked"})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := json.Marshal(e.s.status()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPasswordVerify is the cost of one login attempt (argon2id, 64 MiB).
func BenchmarkPasswordVerify(b *testing.B) {
	h, _ := HashPassword("correct horse")
	for i := 0; i < b.N; i++ {
		if !verifyPassword(h, "correct horse") {
			b.Fatal("verify failed")
		}
	}
}

// TestPasswordFromConfig is the image's way in: no shell to run `appliance web passwd`, so the
// hash comes from [web] password_hash; a password set on the box wins over it.
func TestPasswordFromConfig(t *testing.T) {
	e := newEnv(t)
	h, err := HashPassword("from the config")
	if err != nil {
		t.Fatal(err)
	}
	e.s.o.Config().Web.PasswordHash = h
	if w := login(t, e, lan, "from the config", nil); w.Code != 200 {
		t.Fatalf("login with the config's password: %d %s", w.Code, w.Body)
	}
	if err := SetPassword(e.dir, "set on the box"); err != nil {
		t.Fatal(err)
	}
	if w := login(t, e, lan, "from the config", nil); w.Code == 200 {
		t.Errorf("the config's password still logs in after a password was set on the box")
	}
	if w := login(t, e, lan, "set on the box", nil); w.Code != 200 {
		t.Errorf("login with the box's password: %d %s", w.Code, w.Body)
	}
}

// A garbled hash (a typo in [web] password_hash, a damaged state file) refuses every password
// and never panics.
func TestPasswordHashGarbled(t *testing.T) {
	salt, key := "c2FsdHNhbHRzYWx0c2FsdA", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	for _, h := range []string{
		"", "$argon2id$", "$argon2i$v=19$m=65536,t=2,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=0,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=2,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=2,p=2$" + salt + "$",
		"$argon2id$v=19$m=65536,t=2,p=2$!!$" + key,
		"$argon2id$v=19$m=99999999,t=2,p=2$" + salt + "$" + key,
	} {
		if verifyPassword(h, "correct horse") {
			t.Errorf("%q accepted a password", h)
		}
	}
}

// From outside the LAN an IPv6 host picks any address of its /64: a lockout holds for the
// whole /64 there, not for the one address that guessed.
func TestLockoutIPv6Slash64(t *testing.T) {
	e := newEnv(t)
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	cfg := e.s.o.Config()
	cfg.Admin.Networks = append(cfg.Admin.Networks, config.Prefix{Prefix: netip.MustParsePrefix("2001:db8:aa::/48")})
	for i, from := range []string{"2001:db8:aa:1::a", "2001:db8:aa:1::b", "2001:db8:aa:1::c"} {
		if w := login(t, e, from, "wrong password", nil); w.Code != map[bool]int{true: 429, false: 401}[i == 2] {
			t.Errorf("wrong password #%d from %s: %d", i+1, from, w.Code)
		}
	}
	if w := login(t, e, "2001:db8:aa:1::d", "correct horse", nil); w.Code != 429 {
		t.Errorf("right password from another address of the locked /64: %d, want 429", w.Code)
	}
	if w := login(t, e, "2001:db8:aa:2::d", "correct horse", nil); w.Code != 200 {
		t.Errorf("right password from the admin network's next /64: %d, want 200", w.Code)
	}
	if w := login(t, e, lan, "correct horse", nil); w.Code != 200 {
		t.Errorf("right password from the IPv4 LAN: %d, want 200", w.Code)
	}
}

// The PBX's registration interval, as wan saw it in its REGISTERs, is on the page with the
// warning wan gives for a long one.
func TestRegistrationShown(t *testing.T) {
	e := newEnv(t)
	if st := e.status(t); st.Registration != nil {
		t.Fatalf("registration %+v before any REGISTER", st.Registration)
	}
	e.wan.mu.Lock()
	e.wan.st.Registration = &wan.Registration{Interval: time.Hour, Registrar: "192.0.2.10:5060", Via: wan.Primary, Seen: e.now,
		Warning: "the PBX registers for 1h0m0s: after a failover, inbound calls reach the office only after its next REGISTER"}
	e.wan.mu.Unlock()
	st := e.status(t)
	if r := st.Registration; r == nil || r.Interval != time.Hour || !strings.Contains(r.Warning, "1h0m0s") {
		t.Errorf("registration %+v, want the hour with its warning", r)
	}
}
