package web

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
)

type fakeFW struct {
	mu      sync.Mutex
	blocked map[netip.Prefix]time.Duration
}

func (f *fakeFW) Blocklist() ([]netcfg.Blocked, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netcfg.Blocked
	for p, d := range f.blocked {
		out = append(out, netcfg.Blocked{Prefix: p, Expires: d})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.Addr().Less(out[j].Prefix.Addr()) })
	return out, nil
}
func (f *fakeFW) Block(p netip.Prefix, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked[p] = d
	return nil
}
func (f *fakeFW) Unblock(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.blocked[p]; !ok {
		return errors.New("not blocked")
	}
	delete(f.blocked, p)
	return nil
}

type fakeUplinks struct{ modes []string }

func (u *fakeUplinks) Force(m string) error { u.modes = append(u.modes, m); return nil }

type fakeBoard struct {
	panel   *hal.Panel
	presses int
}

func (b *fakeBoard) Name() string          { return "sim" }
func (b *fakeBoard) LEDs() []hal.LEDState  { return b.panel.LEDs() }
func (b *fakeBoard) Forced() bool          { return b.panel.Forced() }
func (b *fakeBoard) Press(long bool) error { b.presses++; return nil }
func (b *fakeBoard) Acknowledge()          { b.panel.Acknowledge() }

type env struct {
	s     *Server
	bus   *events.Bus
	fw    *fakeFW
	up    *fakeUplinks
	audit *audit.Log
	dir   string
	now   time.Time
}

func newEnv(t testing.TB) *env {
	t.Helper()
	cfg, err := config.Parse("example.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web.MaxFailures, cfg.Web.Lockout = 3, time.Minute
	e := &env{bus: events.New(100), fw: &fakeFW{blocked: map[netip.Prefix]time.Duration{}}, up: &fakeUplinks{}, dir: t.TempDir(),
		now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	e.audit = audit.Open(filepath.Join(e.dir, "audit.log"))
	e.s = New(Options{
		Config: func() *config.Config { return cfg }, Bus: e.bus, Firewall: e.fw, Uplinks: e.up, Audit: e.audit,
		Board: &fakeBoard{panel: hal.NewPanel(nil, nil, 0)}, StateDir: e.dir, Now: func() time.Time { return e.now },
		ReadFirewall: func() FirewallState {
			return FirewallState{Loaded: true, Table: "inet appliance", Rules: 1, Hits: []RuleHits{{Chain: "input", Handle: 7, Comment: "blocked address", Packets: 42, Bytes: 4200}}}
		},
	})
	return e
}

// req makes a request as if from addr (the page decides by the TCP peer's address).
func (e *env) req(method, path, from string, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://192.168.1.1"+path, strings.NewReader(body))
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

const lan = "192.168.1.20"

func TestStatusAPI(t *testing.T) {
	e := newEnv(t)
	e.bus.Publish(events.Event{Kind: "wan.failover", Severity: events.Alert, Message: "FTTC down, now on LTE", Fields: map[string]string{"active": "LTE"}})
	e.bus.Publish(events.Event{Kind: "uplink.check", Fields: map[string]string{"uplink": "LTE", "state": "up", "rtt_ms": "48.5", "loss": "2%"}})
	e.bus.Publish(events.Event{Kind: "sipguard.block", Severity: events.Alert, Message: "REGISTER flood", Fields: map[string]string{"addr": "192.0.2.66", "reason": "friendly-scanner", "packets": "1200"}})
	e.fw.Block(netip.MustParsePrefix("192.0.2.66/32"), time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.s.Run(ctx, nil)
	deadline := time.Now().Add(10 * time.Second)
	for e.s.status().Active != "LTE" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	w := e.req("GET", "/api/status", lan, "", nil)
	if w.Code != 200 {
		t.Fatalf("status from the LAN: %d %s", w.Code, w.Body)
	}
	var st Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Version == "" || st.BuildTime == "" || st.Site != "Example Office" || !st.Firewall.Loaded || st.Firewall.Table != "inet appliance" || st.Firewall.Rules != 1 {
		t.Errorf("status basics: %+v", st)
	}
	if st.Active != "LTE" || len(st.Failovers) != 1 {
		t.Errorf("active %q, failovers %d; want LTE after a failover", st.Active, len(st.Failovers))
	}
	var lte UplinkView
	for _, u := range st.Uplinks {
		if u.Role == "backup" {
			lte = u
		}
	}
	if lte.State != "up" || lte.RTT != 48.5 || lte.Loss != 2 || len(lte.History) != 1 {
		t.Errorf("LTE uplink = %+v", lte)
	}
	if len(st.Blocked) != 1 || st.Blocked[0].Reason != "friendly-scanner" || st.Blocked[0].Packets != "1200" || st.Blocked[0].Expires.IsZero() {
		t.Errorf("blocked = %+v", st.Blocked)
	}
	if len(st.LEDs) != 3 || st.Alerts != 2 {
		t.Errorf("LEDs %v alerts %d", st.LEDs, st.Alerts)
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
	m := e.req("GET", "/metrics", lan, "", nil)
	for _, want := range []string{`appliance_firewall_rule_packets_total{chain="input",handle="7",rule="blocked address"} 42`, `appliance_uplink_active{role="backup",uplink="LTE"} 1`, `appliance_blocked_addresses 1`} {
		if !strings.Contains(m.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func login(t *testing.T, e *env, from, pw string, hdr map[string]string) *httptest.ResponseRecorder {
	b, _ := json.Marshal(map[string]string{"password": pw})
	return e.req("POST", "/api/login", from, string(b), hdr)
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

	w := login(t, e, lan, "correct horse", map[string]string{"Origin": "http://192.168.1.1"})
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	cookie := w.Result().Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict", cookie)
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
	if len(e.up.modes) != 0 {
		t.Fatalf("a refused action reached the uplinks: %v", e.up.modes)
	}
	ok := with(map[string]string{"X-CSRF-Token": lr.CSRF, "Origin": "http://192.168.1.1"})
	if w := e.req("POST", "/api/uplink/force", lan, force, ok); w.Code != 200 || len(e.up.modes) != 1 || e.up.modes[0] != "backup" {
		t.Errorf("force backup: %d %s, uplinks got %v", w.Code, w.Body, e.up.modes)
	}
	if w := e.req("POST", "/api/block", lan, `{"addr":"192.0.2.77","for":"1h"}`, ok); w.Code != 200 {
		t.Errorf("block: %d %s", w.Code, w.Body)
	}
	if w := e.req("POST", "/api/block", lan, `{"addr":"not-an-ip"}`, ok); w.Code != 400 {
		t.Errorf("block of garbage: %d, want 400", w.Code)
	}
	if w := e.req("POST", "/api/unblock", lan, `{"addr":"192.0.2.77"}`, ok); w.Code != 200 {
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

// The page's event stream pushes a new status when something happens.
func TestEventStream(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.s.Run(ctx, nil)
	srv := httptest.NewServer(e.s.Handler())
	defer srv.Close()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	next := func() Status {
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
	if st := next(); st.Active != "FTTC" {
		t.Fatalf("first status: active %q", st.Active)
	}
	e.bus.Publish(events.Event{Kind: "wan.failover", Message: "to LTE", Fields: map[string]string{"active": "LTE"}})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := next(); st.Active == "LTE" {
			return
		}
	}
	t.Fatal("the stream never showed the failover")
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
	srv := httptest.NewServer(e.s.Handler())
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
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

var _ = io.EOF

// sipguard's evidence pcap and abuse report for a blocked address are served to a logged-in
// admin, and never a file outside the state directory.
func TestEvidenceAndReport(t *testing.T) {
	e := newEnv(t)
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	ev := filepath.Join(e.dir, "evidence", "x-192.0.2.66.pcapng")
	os.MkdirAll(filepath.Dir(ev), 0o700)
	os.WriteFile(ev, []byte("PCAPNG-BYTES"), 0o600)
	os.WriteFile(strings.TrimSuffix(ev, ".pcapng")+".txt", []byte("To: abuse@example.net\nreport body"), 0o600)
	entries := []map[string]any{
		{"prefix": "192.0.2.66/32", "reason": "scanner", "detail": "friendly-scanner", "since": e.now, "evidence": ev, "report": strings.TrimSuffix(ev, ".pcapng") + ".txt", "dropped": 812},
		{"prefix": "192.0.2.67/32", "reason": "flood", "evidence": "/etc/passwd"},
	}
	e.s.o.GuardBlocked = func() json.RawMessage { b, _ := json.Marshal(entries); return b }
	e.fw.Block(netip.MustParsePrefix("192.0.2.66/32"), 0)
	e.fw.Block(netip.MustParsePrefix("192.0.2.67/32"), 0)

	st := e.s.status()
	if len(st.Blocked) != 2 || st.Blocked[0].Reason != "scanner: friendly-scanner" || st.Blocked[0].Packets != "812" || !st.Blocked[0].Evidence || st.Blocked[1].Evidence {
		t.Fatalf("blocked = %+v", st.Blocked)
	}
	w := login(t, e, lan, "correct horse", nil)
	sess := map[string]string{"Cookie": w.Result().Cookies()[0].Name + "=" + w.Result().Cookies()[0].Value}
	if w := e.req("GET", "/api/evidence?addr=192.0.2.66", lan, "", nil); w.Code != 401 {
		t.Errorf("evidence without login: %d", w.Code)
	}
	if w := e.req("GET", "/api/evidence?addr=192.0.2.66", lan, "", sess); w.Code != 200 || w.Body.String() != "PCAPNG-BYTES" {
		t.Errorf("evidence: %d %q", w.Code, w.Body)
	}
	if w := e.req("GET", "/api/abuse?addr=192.0.2.66", lan, "", sess); w.Code != 200 || !strings.Contains(w.Body.String(), "abuse@example.net") {
		t.Errorf("report: %d %q", w.Code, w.Body)
	}
	if w := e.req("GET", "/api/evidence?addr=192.0.2.67", lan, "", sess); w.Code != 404 || strings.Contains(w.Body.String(), "root:") {
		t.Errorf("evidence outside the state directory: %d %q", w.Code, w.Body)
	}
	// A symbolic link in the state directory that leads out of it is not followed.
	if err := os.Symlink("/etc", filepath.Join(e.dir, "etc")); err != nil {
		t.Fatal(err)
	}
	entries[1]["evidence"] = filepath.Join(e.dir, "etc", "passwd")
	if w := e.req("GET", "/api/evidence?addr=192.0.2.67", lan, "", sess); w.Code != 404 || strings.Contains(w.Body.String(), "root:") {
		t.Errorf("evidence through a symlink out of the state directory: %d %q", w.Code, w.Body)
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
// it), with a blocklist of 1000 entries and 1000 events kept.
func BenchmarkStatus(b *testing.B) {
	e := newEnv(b)
	for i := 0; i < 1000; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		e.fw.Block(netip.PrefixFrom(a, 32), time.Hour)
		e.bus.Publish(events.Event{Kind: "sipguard.block", Fields: map[string]string{"addr": a.String(), "reason": "scanner"}})
	}
	for _, ev := range e.bus.Recent(1000) {
		e.s.observe(ev)
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

// An IPv6 host picks any address of its /64: a lockout holds for the whole /64, not for the
// one address that guessed.
func TestLockoutIPv6Slash64(t *testing.T) {
	e := newEnv(t)
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	for i, from := range []string{"fd00:1::a", "fd00:1::b", "fd00:1::c"} {
		if w := login(t, e, from, "wrong password", nil); w.Code != map[bool]int{true: 429, false: 401}[i == 2] {
			t.Errorf("wrong password #%d from %s: %d", i+1, from, w.Code)
		}
	}
	if w := login(t, e, "fd00:1::d", "correct horse", nil); w.Code != 429 {
		t.Errorf("right password from another address of the locked /64: %d, want 429", w.Code)
	}
	if w := login(t, e, lan, "correct horse", nil); w.Code != 200 {
		t.Errorf("right password from the IPv4 LAN: %d, want 200", w.Code)
	}
}
