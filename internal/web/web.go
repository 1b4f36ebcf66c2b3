// Package web serves the box's status page, its JSON API and Prometheus metrics on the LAN and admin addresses.
package web

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/notify"
	"github.com/officeedge/appliance/internal/version"
	"github.com/officeedge/appliance/netcfg"
)

// Firewall is the part of netcfg.Firewall the page uses.
type Firewall interface {
	Blocklist() ([]netcfg.Blocked, error)
	Block(p netip.Prefix, d time.Duration) error
	Unblock(p netip.Prefix) error
}

// Uplinks forces an uplink; the wan part implements it (through the control API's
// POST /wan/force with body backup|primary|auto).
type Uplinks interface {
	Force(mode string) error
}

// Board is the box's LEDs and button as the page shows and presses them.
type Board interface {
	Name() string
	LEDs() []hal.LEDState
	Forced() bool
	Press(long bool) error // ErrNoButton when the board cannot be pressed from here
	Acknowledge()          // clears the alert LED
}

// Options are what the server shows and acts on; nil parts are shown as absent.
type Options struct {
	Config       func() *config.Config
	Bus          *events.Bus
	Firewall     Firewall
	ReadFirewall func() FirewallState // default ReadFirewall (netlink, current namespace)
	Uplinks      Uplinks
	Board        Board
	Audit        *audit.Log
	Mail         func() notify.Status
	WANStatus    func() json.RawMessage // the wan part's own status (GET /wan/status), if it has one
	GuardBlocked func() json.RawMessage // sipguard's blocklist with reasons (GET /sipguard/blocked), if any
	StateDir     string
	Log          *slog.Logger
	Now          func() time.Time
}

// Server is the status page and its API.
type Server struct {
	o     Options
	mux   *http.ServeMux
	model *model
	auth  *auth

	mu      sync.Mutex
	clients map[chan struct{}]struct{}
	events  <-chan events.Event
	unsub   func()
	counts  map[[2]string]uint64 // events seen by kind and severity, for /metrics
}

//go:embed static
var static embed.FS

// New makes a server; call Run to follow the events and Handler to serve it.
func New(o Options) *Server {
	if o.ReadFirewall == nil {
		o.ReadFirewall = ReadFirewall
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, mux: http.NewServeMux(), model: newModel(), clients: map[chan struct{}]struct{}{}, counts: map[[2]string]uint64{}}
	s.auth = &auth{stateDir: o.StateDir, now: o.Now, sessions: map[string]*session{}, fails: map[netip.Prefix]*failures{},
		limits: func() (time.Duration, time.Duration, int) {
			w := o.Config().Web
			return w.Session, w.Lockout, w.MaxFailures
		},
		configHash: func() string { return o.Config().Web.PasswordHash }}
	// Subscribe before reading the past, so nothing falls between the two (an event published
	// in that instant is seen twice, which only repeats a line of history).
	s.events, s.unsub = o.Bus.Subscribe(1024)
	for _, e := range o.Bus.Recent(1000) {
		s.observe(e)
	}
	s.routes()
	return s
}

func (s *Server) observe(e events.Event) {
	s.model.observe(s.o.Config(), e)
	s.mu.Lock()
	s.counts[[2]string{e.Kind, string(e.Severity)}]++
	s.mu.Unlock()
}

// Run follows the event bus (and changes) and pushes updates to open pages until ctx ends.
// ledChanged, if not nil, signals that an LED's pattern may have changed.
func (s *Server) Run(ctx context.Context, ledChanged <-chan struct{}) error {
	defer s.unsub()
	sample := time.NewTicker(10 * time.Second)
	defer sample.Stop()
	s.pollWAN()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sample.C:
			s.pollWAN()
		case e := <-s.events:
			s.observe(e)
			s.Changed()
		case <-ledChanged:
			s.Changed()
		}
	}
}

// pollWAN reads the wan's own status, for the uplinks' state and their RTT/loss history.
func (s *Server) pollWAN() *wanMirror {
	if s.o.WANStatus == nil {
		return nil
	}
	raw := s.o.WANStatus()
	if raw == nil {
		return nil
	}
	var w wanMirror
	if json.Unmarshal(raw, &w) != nil {
		return nil
	}
	s.model.apply(&w, s.o.Now())
	return &w
}

// Changed tells open pages to refresh.
func (s *Server) Changed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (s *Server) routes() {
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	s.mux.Handle("GET /{$}", files)
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	s.mux.HandleFunc("GET /api/status", s.handleStatus)
	s.mux.HandleFunc("GET /api/events", s.handleSSE)
	s.mux.HandleFunc("GET /api/session", s.handleSession)
	s.mux.HandleFunc("GET /api/leds", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.leds()) })
	s.mux.Handle("GET /metrics", s.metricsHandler())
	s.mux.HandleFunc("POST /api/login", s.handleLogin)
	s.mux.HandleFunc("POST /api/logout", s.action(s.handleLogout))
	s.mux.HandleFunc("POST /api/uplink/force", s.action(s.handleForce))
	s.mux.HandleFunc("POST /api/block", s.action(s.handleBlock))
	s.mux.HandleFunc("POST /api/unblock", s.action(s.handleUnblock))
	s.mux.HandleFunc("POST /api/alerts/ack", s.action(s.handleAck))
	s.mux.HandleFunc("POST /api/button", s.action(s.handleButton))
	s.mux.HandleFunc("GET /api/audit.csv", s.loggedIn(s.handleAuditCSV))
	s.mux.HandleFunc("GET /api/evidence", s.loggedIn(s.handleEvidence))
	s.mux.HandleFunc("GET /api/abuse", s.loggedIn(s.handleAbuse))
}

// Handler serves the page and API to the LAN and the admin networks only.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Everything the page needs is served from the box itself (it may be offline).
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if !s.hostAllowed(r.Host) {
			// A name the box does not know is how DNS rebinding lets a web page elsewhere read
			// this one: only its IP addresses and the configured names are served.
			http.Error(w, "unknown host name: use the box's address or add the name to [web] hostnames", http.StatusMisdirectedRequest)
			return
		}
		addr := remoteAddr(r)
		if !s.allowed(addr) {
			http.Error(w, "the status page is only for the office LAN and the admin networks", http.StatusForbidden)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "."), "["), "]")
	if _, err := netip.ParseAddr(host); err == nil || strings.EqualFold(host, "localhost") {
		return true
	}
	for _, n := range s.o.Config().Web.Hostnames {
		if strings.EqualFold(strings.TrimSuffix(n, "."), host) {
			return true
		}
	}
	return false
}

// allowed says whether addr is on the LAN, in an admin network, or the box itself.
func (s *Server) allowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	if a.IsLoopback() {
		return true
	}
	cfg := s.o.Config()
	for _, p := range cfg.LAN.Subnets() {
		if p.Contains(a) {
			return true
		}
	}
	for _, p := range cfg.Admin.Networks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// actor is who did something, for the audit log.
type actor struct{ who, from string }

// action wraps a state-changing handler: same origin, a valid session and its CSRF token.
func (s *Server) action(h func(w http.ResponseWriter, r *http.Request, a actor)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := sameOrigin(r); err != nil {
			httpError(w, http.StatusForbidden, err.Error())
			return
		}
		sess := s.auth.session(r)
		if sess == nil {
			httpError(w, http.StatusUnauthorized, "log in first")
			return
		}
		tok := r.Header.Get("X-CSRF-Token")
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(sess.csrf)) != 1 {
			httpError(w, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		h(w, r, actor{who: "admin", from: remoteAddr(r).String()})
	}
}

func (s *Server) loggedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.auth.session(r) == nil {
			httpError(w, http.StatusUnauthorized, "log in first")
			return
		}
		h(w, r)
	}
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func readJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return errors.New("send JSON (Content-Type: application/json)")
	}
	if err := json.NewDecoder(r.Body).Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("bad JSON: %w", err)
	}
	return nil
}

func (s *Server) record(a actor, what, before, after string) {
	if s.o.Audit == nil {
		return
	}
	if err := s.o.Audit.Record(audit.Entry{Who: a.who, From: a.from, Via: "web", What: what, Before: before, After: after}); err != nil {
		s.o.Log.Error("audit", "err", err)
	}
}

func (s *Server) publish(kind string, sev events.Severity, msg string, fields map[string]string) {
	s.o.Bus.Publish(events.Event{Kind: kind, Severity: sev, Source: "web", Message: msg, Fields: fields})
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"logged_in": false, "password_set": s.auth.passwordSet()}
	if sess := s.auth.session(r); sess != nil {
		out["logged_in"], out["csrf"], out["expires"] = true, sess.csrf, sess.expires
	}
	writeJSON(w, 200, out)
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		httpError(w, http.StatusForbidden, err.Error())
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := readJSON(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	addr := remoteAddr(r)
	id, csrf, locked, err := s.auth.login(addr, req.Password)
	switch {
	case errors.Is(err, errLocked):
		s.publish("web.login.locked", events.Warn, fmt.Sprintf("login from %s locked out after wrong passwords", addr), map[string]string{"addr": addr.String()})
		w.Header().Set("Retry-After", fmt.Sprint(int(locked.Seconds())+1))
		httpError(w, http.StatusTooManyRequests, fmt.Sprintf("%v for %s", err, locked.Round(time.Second)))
		return
	case errors.Is(err, errNoPassword):
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		s.publish("web.login.failed", events.Info, "wrong password from "+addr.String(), map[string]string{"addr": addr.String()})
		httpError(w, http.StatusUnauthorized, err.Error())
		return
	}
	ttl, _, _ := s.auth.limits()
	// No Secure flag: the page is plain HTTP on the LAN; SameSite=Strict keeps other sites'
	// requests from carrying it.
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: int(ttl.Seconds())})
	s.record(actor{"admin", addr.String()}, "login", "", "")
	writeJSON(w, 200, map[string]any{"logged_in": true, "csrf": csrf})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, a actor) {
	s.auth.logout(r)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	s.record(a, "logout", "", "")
	writeJSON(w, 200, map[string]any{"logged_in": false})
}

func (s *Server) mode() string {
	s.model.mu.Lock()
	m := s.model.mode
	s.model.mu.Unlock()
	if m != "" {
		return m
	}
	if s.o.Board != nil && s.o.Board.Forced() {
		return "backup"
	}
	return "auto"
}

func (s *Server) handleForce(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Mode string `json:"mode"`
	}
	if err := readJSON(r, &req); err != nil {
		httpError(w, 400, err.Error())
		return
	}
	if req.Mode != "backup" && req.Mode != "primary" && req.Mode != "auto" {
		httpError(w, 400, "mode must be backup, primary or auto")
		return
	}
	if s.o.Uplinks == nil {
		httpError(w, http.StatusServiceUnavailable, "forcing an uplink is not available")
		return
	}
	before := s.mode()
	if err := s.o.Uplinks.Force(req.Mode); err != nil {
		s.publish("web.force.failed", events.Warn, "forcing "+req.Mode+" failed: "+err.Error(), map[string]string{"mode": req.Mode})
		httpError(w, http.StatusBadGateway, err.Error())
		return
	}
	s.record(a, "uplink.force", before, req.Mode)
	s.publish("web.force", events.Info, "uplink mode set to "+req.Mode+" from the status page", map[string]string{"mode": req.Mode})
	writeJSON(w, 200, map[string]string{"mode": req.Mode})
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p config.Prefix
	if err := p.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return netip.Prefix{}, err
	}
	return p.Prefix.Masked(), nil
}

// readAddrRequest decodes a JSON request into req and parses the address or network it put
// in *addr, answering 400 itself when it cannot; ok is false then.
func readAddrRequest(w http.ResponseWriter, r *http.Request, req any, addr *string) (p netip.Prefix, ok bool) {
	if err := readJSON(r, req); err != nil {
		httpError(w, 400, err.Error())
		return p, false
	}
	p, err := parsePrefix(*addr)
	if err != nil {
		httpError(w, 400, err.Error())
		return p, false
	}
	return p, true
}

func (s *Server) handleBlock(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Addr   string `json:"addr"`
		For    string `json:"for"`
		Reason string `json:"reason"`
	}
	p, ok := readAddrRequest(w, r, &req, &req.Addr)
	if !ok {
		return
	}
	var d time.Duration
	if req.For != "" {
		var err error
		if d, err = time.ParseDuration(req.For); err != nil || d < 0 {
			httpError(w, 400, fmt.Sprintf("%q is not a duration like 30m or 24h", req.For))
			return
		}
	}
	if err := s.o.Firewall.Block(p, d); err != nil {
		code := 500
		if errors.Is(err, netcfg.ErrProtected) {
			code = 409
		}
		httpError(w, code, err.Error())
		return
	}
	reason := firstNonEmpty(req.Reason, "blocked by hand on the status page")
	s.record(a, "block", "", fmt.Sprintf("%s for %s (%s)", p, forText(d), reason))
	s.publish("block.manual", events.Info, fmt.Sprintf("%s blocked by hand", p), map[string]string{"addr": p.String(), "reason": reason})
	writeJSON(w, 200, map[string]string{"blocked": p.String()})
}

func forText(d time.Duration) string {
	if d == 0 {
		return "ever"
	}
	return d.String()
}

func (s *Server) handleUnblock(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Addr string `json:"addr"`
	}
	p, ok := readAddrRequest(w, r, &req, &req.Addr)
	if !ok {
		return
	}
	if err := s.o.Firewall.Unblock(p); err != nil {
		httpError(w, 409, err.Error())
		return
	}
	s.record(a, "unblock", p.String(), "")
	s.publish("block.manual.unblock", events.Info, fmt.Sprintf("%s unblocked by hand", p), map[string]string{"addr": p.String()})
	writeJSON(w, 200, map[string]string{"unblocked": p.String()})
}

func (s *Server) handleAck(w http.ResponseWriter, r *http.Request, a actor) {
	if s.o.Board != nil {
		s.o.Board.Acknowledge()
	}
	s.record(a, "alert.acknowledge", "", "")
	s.publish("alert.acknowledged", events.Info, "alerts acknowledged on the status page", nil)
	writeJSON(w, 200, map[string]bool{"acknowledged": true})
}

// ErrNoButton means the board's button cannot be pressed from the page (a real one is).
var ErrNoButton = errors.New("this box's button is a real one: press it on the box")

func (s *Server) handleButton(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Long bool `json:"long"`
	}
	if err := readJSON(r, &req); err != nil {
		httpError(w, 400, err.Error())
		return
	}
	if s.o.Board == nil {
		httpError(w, http.StatusServiceUnavailable, ErrNoButton.Error())
		return
	}
	kind := "short"
	if req.Long {
		kind = "long"
	}
	s.record(a, "button.press", "", kind+" (simulated)")
	// A long press holds the button for seconds: answer now, the result arrives as events.
	go func() {
		if err := s.o.Board.Press(req.Long); err != nil {
			s.publish("web.button.failed", events.Warn, "simulated button press failed: "+err.Error(), nil)
		}
	}()
	writeJSON(w, http.StatusAccepted, map[string]string{"pressed": kind})
}

func (s *Server) handleAuditCSV(w http.ResponseWriter, r *http.Request) {
	if s.o.Audit == nil {
		httpError(w, 404, "no audit log")
		return
	}
	es, err := s.o.Audit.Entries()
	if err != nil {
		httpError(w, 500, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="audit.csv"`)
	_ = audit.WriteCSV(w, es)
}

// handleEvidence serves the packet capture sipguard recorded for a blocked address.
func (s *Server) handleEvidence(w http.ResponseWriter, r *http.Request) {
	key := canonical(r.URL.Query().Get("addr"))
	pcap, _ := s.blockFiles(key)
	f, err := s.stateFile(pcap)
	if err != nil {
		httpError(w, 404, "no evidence recorded for "+key)
		return
	}
	defer f.Close()
	ext := filepath.Ext(pcap)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="evidence-%s%s"`, strings.NewReplacer(":", "_", "/", "_").Replace(key), ext))
	_, _ = io.Copy(w, f)
}

// handleAbuse writes an abuse report for a blocked address: what the box saw, ready to send
// to the abuse contact of the network it came from.
func (s *Server) handleAbuse(w http.ResponseWriter, r *http.Request) {
	key := canonical(r.URL.Query().Get("addr"))
	if _, report := s.blockFiles(key); report != "" {
		if f, err := s.stateFile(report); err == nil { // sipguard's own report, with the RDAP abuse contact
			defer f.Close()
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.Copy(w, f)
			return
		}
	}
	s.model.mu.Lock()
	b := s.model.blocks[key]
	var info blockInfo
	if b != nil {
		info = *b
		info.Events = append([]events.Event(nil), b.Events...)
	}
	s.model.mu.Unlock()
	if b == nil {
		httpError(w, 404, "no block recorded for "+key)
		return
	}
	cfg := s.o.Config()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Subject: Abuse report: attacks on a telephone system from %s\n\n", key)
	if info.Abuse != "" {
		fmt.Fprintf(w, "To: %s\n\n", info.Abuse)
	}
	fmt.Fprintf(w, "Hello,\n\nthe office edge firewall of %q saw attacks on its telephone system (SIP) from %s,\n", cfg.Site, key)
	fmt.Fprintf(w, "which your network announces. The address has been blocked since %s.\n\n", info.Since.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Reason: %s\n", info.Reason)
	if info.Packets != "" {
		fmt.Fprintf(w, "Packets dropped: %s\n", info.Packets)
	}
	fmt.Fprintf(w, "\nWhat was seen (times in UTC):\n")
	for _, e := range info.Events {
		fmt.Fprintf(w, "  %s  %s  %s\n", e.Time.UTC().Format(time.RFC3339), e.Kind, e.Message)
	}
	if info.Pcap != "" {
		fmt.Fprintf(w, "\nA packet capture is available on request.\n")
	}
	fmt.Fprintf(w, "\nPlease stop the traffic and check the host for compromise.\n")
}

// guardEntry is the part of sipguard's block entries the page uses.
type guardEntry struct {
	Prefix   string    `json:"prefix"`
	Reason   string    `json:"reason"`
	Detail   string    `json:"detail"`
	Since    time.Time `json:"since"`
	Expires  time.Time `json:"expires"`
	Evidence string    `json:"evidence"`
	Report   string    `json:"report"`
	Dropped  uint64    `json:"dropped"`
}

func (s *Server) guardEntries() map[string]guardEntry {
	out := map[string]guardEntry{}
	if s.o.GuardBlocked == nil {
		return out
	}
	var list []guardEntry
	if raw := s.o.GuardBlocked(); raw == nil || json.Unmarshal(raw, &list) != nil {
		return out
	}
	for _, e := range list {
		out[canonical(e.Prefix)] = e
	}
	return out
}

// blockFiles finds the evidence pcap and the abuse report of a blocked address: sipguard's
// own list first, then what its events said.
func (s *Server) blockFiles(key string) (pcap, report string) {
	if g, ok := s.guardEntries()[key]; ok {
		return g.Evidence, g.Report
	}
	s.model.mu.Lock()
	defer s.model.mu.Unlock()
	if b := s.model.blocks[key]; b != nil {
		pcap = b.Pcap
		if strings.HasSuffix(pcap, ".pcapng") || strings.HasSuffix(pcap, ".pcap") {
			report = strings.TrimSuffix(strings.TrimSuffix(pcap, ".pcapng"), ".pcap") + ".txt"
		}
	}
	return pcap, report
}

// stateFile opens path only if it lies in the state directory: the paths come from events.
// os.OpenInRoot also refuses a symbolic link that leads out of it.
func (s *Server) stateFile(path string) (*os.File, error) {
	rel, ok := s.inState(path)
	if !ok {
		return nil, fmt.Errorf("web: %q is not in the state directory", path)
	}
	return os.OpenInRoot(s.o.StateDir, rel)
}

// inState resolves path (relative ones from the state directory) and says whether it lies in
// it, returning it relative to the state directory.
func (s *Server) inState(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	state, err := filepath.Abs(s.o.StateDir)
	if err != nil {
		return "", false
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(state, path)
	}
	rel, err := filepath.Rel(state, filepath.Clean(path))
	return rel, err == nil && filepath.IsLocal(rel)
}

// BlockedView is one blocklist entry with what is known of why.
type BlockedView struct {
	Addr      string    `json:"addr"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since,omitzero"`
	Expires   time.Time `json:"expires,omitzero"` // zero: until unblocked
	Packets   string    `json:"packets_dropped"`  // "" when unknown
	Evidence  bool      `json:"evidence"`         // a pcap can be downloaded
	Abuse     string    `json:"abuse_contact,omitempty"`
	ReportURL string    `json:"report_url"`
}

// Status is everything the page shows, as the JSON API returns it.
type Status struct {
	Version      string         `json:"version"`
	BuildTime    string         `json:"build_time"`
	Site         string         `json:"site"`
	Time         time.Time      `json:"time"`
	Firewall     FirewallState  `json:"firewall"`
	Active       string         `json:"active_uplink"` // name; "" when both are down
	Mode         string         `json:"mode"`          // auto, or backup when forced
	Uplinks      []UplinkView   `json:"uplinks"`
	Failovers    []events.Event `json:"failovers"`
	Trunks       []TrunkView    `json:"trunks"`
	Blocked      []BlockedView  `json:"blocked"`
	BlockedError string         `json:"blocked_error,omitempty"`
	Events       []events.Event `json:"events"` // newest first
	Alerts       int            `json:"alerts"` // alert events not yet acknowledged
	Board        string         `json:"board"`
	LEDs         []hal.LEDState `json:"leds"`
	Checklist    []Check        `json:"checklist"`
	Mail         notify.Status  `json:"mail"`
}

func (s *Server) leds() []hal.LEDState {
	if s.o.Board == nil {
		return nil
	}
	return s.o.Board.LEDs()
}

func (s *Server) status() Status {
	cfg := s.o.Config()
	st := Status{
		Version: version.Version, BuildTime: version.BuildTime, Site: cfg.Site,
		Time: s.o.Now(), Firewall: s.o.ReadFirewall(), Mode: s.mode(),
		Failovers: []events.Event{}, Trunks: []TrunkView{}, Blocked: []BlockedView{}, Events: []events.Event{},
	}
	if raw := s.o.WANStatus; raw != nil {
		if w := s.pollWAN(); w != nil {
			st.Mode = firstNonEmpty(w.Mode, st.Mode)
		}
	}
	st.Uplinks, st.Active = s.model.uplinkViews(cfg)
	s.model.mu.Lock()
	for i := len(s.model.failovers) - 1; i >= 0 && len(st.Failovers) < 50; i-- {
		st.Failovers = append(st.Failovers, s.model.failovers[i])
	}
	for _, t := range s.model.trunks {
		st.Trunks = append(st.Trunks, *t)
	}
	st.Alerts = s.model.alerts
	s.model.mu.Unlock()
	sort.Slice(st.Trunks, func(i, j int) bool { return st.Trunks[i].Name < st.Trunks[j].Name })

	if s.o.Firewall != nil {
		list, err := s.o.Firewall.Blocklist()
		if err != nil {
			st.BlockedError = err.Error()
		}
		guard := s.guardEntries()
		s.model.mu.Lock()
		for _, b := range list {
			key := canonical(b.Prefix.String())
			v := BlockedView{Addr: key, Reason: "unknown (blocked by the CLI, or before events were kept)", ReportURL: "/api/abuse?addr=" + key}
			if b.Expires > 0 {
				v.Expires = st.Time.Add(b.Expires).Truncate(time.Second)
			}
			if i := s.model.blocks[key]; i != nil {
				_, ok := s.inState(i.Pcap)
				v.Reason, v.Since, v.Packets, v.Evidence, v.Abuse = i.Reason, i.Since, i.Packets, ok, i.Abuse
			}
			if g, ok := guard[key]; ok {
				// sipguard's own record is the best source for its blocks; for the others (by
				// hand, a feed) it knows no time, and the events may know more.
				if !g.Since.IsZero() || v.Since.IsZero() {
					v.Reason = firstNonEmpty(strings.TrimSuffix(strings.TrimSpace(g.Reason+": "+g.Detail), ":"), v.Reason)
					v.Since = g.Since
				}
				_, ok := s.inState(g.Evidence)
				v.Evidence = v.Evidence || ok
				v.Packets = strconv.FormatUint(g.Dropped, 10)
			}
			st.Blocked = append(st.Blocked, v)
		}
		s.model.mu.Unlock()
	}
	recent := s.o.Bus.Recent(50)
	for i := len(recent) - 1; i >= 0; i-- {
		st.Events = append(st.Events, recent[i])
	}
	if s.o.Board != nil {
		st.Board, st.LEDs = s.o.Board.Name(), s.o.Board.LEDs()
	}
	if s.o.Mail != nil {
		st.Mail = s.o.Mail()
	}

	st.Checklist = s.checklist(cfg, &st)
	return st
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status())
}

const maxStreams = 32

// sseWriteTimeout bounds one write of the event stream (a variable for the tests).
var sseWriteTimeout = 30 * time.Second

// handleSSE pushes the status to an open page whenever something changes (and every 5 s, for
// the counters), at most 4 times a second.
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if len(s.clients) >= maxStreams { // each open page costs a status snapshot every few seconds
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "too many open status pages")
		return
	}
	s.clients[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.clients, ch)
		s.mu.Unlock()
	}()
	// A page that stops reading (a laptop gone to sleep) would block a write for as long as
	// its connection stays open, holding one of the streams: each write gets a deadline.
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{})
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		b, _ := json.Marshal(s.status())
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-ch:
		case <-tick.C:
		}
		select { // let a burst of events settle into one update
		case <-r.Context().Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}
