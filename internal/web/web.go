// Package web serves the box's status page, its JSON API and Prometheus metrics on the LAN and admin addresses.
package web

import (
	"cmp"
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
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/cfgedit"
	"github.com/officeedge/appliance/internal/clock"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/crowdsec"
	"github.com/officeedge/appliance/internal/dhcpd"
	"github.com/officeedge/appliance/internal/diag"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/history"
	"github.com/officeedge/appliance/internal/notify"
	"github.com/officeedge/appliance/internal/peers"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
	"github.com/officeedge/appliance/wan"
)

// Blocklist is the part of *netcfg.Owner the page reads and acts on.
type Blocklist interface {
	State() *netcfg.BlockState
	Block(netcfg.BlockRequest) (netcfg.Entry, error)
	Unblock(p netip.Prefix, by string) (netcfg.Entry, error)
	Packets() map[netip.Prefix]uint64
	Watch() (<-chan struct{}, func())
}

// Board is the box's LEDs and button as the page shows and presses them.
type Board interface {
	Name() string
	LEDs() []hal.LEDState
	Press(long bool) error    // fails when the button cannot be pressed from here (a real one)
	Changed() <-chan struct{} // a value whenever an LED's pattern may have changed
}

// Options are what the server shows and acts on; nil parts are shown as absent.
type Options struct {
	Config func() *config.Config
	// Bus is the history: the recent events listed, the wake-ups of open pages, the event
	// counters of /metrics. The state shown comes from the typed snapshots below.
	Bus          *events.Bus
	WAN          func() (wan.Status, bool)                   // wan.Service.Status; false when wan is off
	Force        func(ctx context.Context, m wan.Mode) error // wan.Service.Force
	Blocklist    Blocklist                                   // the firewall owner
	Guard        func() (sipguard.Stats, int, bool)          // sipguard's counters and sources tracked; false when off
	GuardEntries func() []sipguard.Entry                     // sipguard's records of its blocks (evidence, reports)
	Alerts       *alerts.Store
	CrowdSec     func() (crowdsec.Status, bool) // the fleet-sharing part's state; false when off
	Peers        func() []peers.Name            // trusted host names and their addresses now
	ReadFirewall func() FirewallState           // default ReadFirewall (netlink, current namespace)
	Board        Board
	Audit        *audit.Log
	Mail         func() notify.Status
	Certs        *Certs                       // the HTTPS certificate, shown on the page; nil: none shown
	Backups      func() (backup.Status, bool) // the backups' status; false when off
	StateDir     string
	Log          *slog.Logger
	Now          func() time.Time

	// DHCP is the DHCP server's state and leases; false when it is off.
	DHCP func() (dhcpd.Status, bool)
	// Clock is the box's clock (trusted yet, offset, last sync); false when it is not running.
	Clock func() (clock.State, bool)
	// VPN is the WireGuard part in force; false when [vpn] is off.
	VPN func() (VPN, bool)

	// ReadDropped reads who the firewall turned away (default: netcfg.New(0).Dropped, in
	// the current namespace); read at most every droppedEvery (web/nft.go).
	ReadDropped func(top int) ([]netcfg.DroppedWindow, error)

	// ConfigEdit changes the config file (at ConfigPath) from the page, each change put back
	// unless confirmed in time; nil: the page cannot change it.
	ConfigEdit *cfgedit.Editor
	ConfigPath string
	// Uplinks are the ways out the diagnostics may take (nil: none).
	Uplinks func() []diag.Uplink

	// History is the figures over time the charts draw (nil: none kept); Budgets each capped
	// uplink's data use.
	History func() *history.Store
	Budgets func() []history.UplinkUsage
}

// Server is the status page and its API.
type Server struct {
	o    Options
	mux  *http.ServeMux
	auth *auth
	diag *diagLimits

	mu      sync.Mutex
	clients map[chan struct{}]struct{}
	streams map[netip.Prefix]int // open event streams by clientKey
	gen     uint64               // counts Changed, so a snapshot knows whether it is still current
	snap    snapshot             // the last status sent on a stream, shared by all of them
	events  <-chan events.Event
	unsub   func()
	counts  map[[2]string]uint64 // events seen by kind and severity, for /metrics
	fw      firewallCache        // web/nft.go; it has its own locks
}

// snapshot is a status as JSON, made after gen changes.
type snapshot struct {
	b   []byte
	gen uint64
	at  time.Time
}

//go:embed static
var static embed.FS

// New makes a server; call Run to follow the parts and Handler to serve it.
func New(o Options) *Server {
	if o.ReadFirewall == nil {
		o.ReadFirewall = ReadFirewall
	}
	if o.ReadDropped == nil {
		o.ReadDropped = netcfg.New(0).Dropped
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, mux: http.NewServeMux(), diag: newDiagLimits(), clients: map[chan struct{}]struct{}{},
		streams: map[netip.Prefix]int{}, counts: map[[2]string]uint64{}}
	s.auth = newAuth(o.StateDir, o.Now)
	s.auth.limits = func() (time.Duration, time.Duration, int) {
		w := o.Config().Web
		return w.Session, w.Lockout, w.MaxFailures
	}
	s.auth.configHash = func() string { return o.Config().Web.PasswordHash }
	// Subscribe before counting the past, so nothing falls between the two (an event published
	// in that instant is counted twice, which only nudges a counter).
	s.events, s.unsub = o.Bus.Subscribe(1024)
	for _, e := range o.Bus.Recent(1000) {
		s.count(e)
	}
	s.routes()
	return s
}

// count adds an event to the /metrics counters.
func (s *Server) count(e events.Event) {
	s.mu.Lock()
	s.counts[[2]string{e.Kind, string(e.Severity)}]++
	s.mu.Unlock()
}

// Run wakes open pages whenever a part's state changes (an event, the blocklist, the alerts, the LEDs), until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	defer s.unsub()
	blocks, stopBlocks := s.watchBlocklist()
	defer stopBlocks()
	alerted, stopAlerts := s.watchAlerts()
	defer stopAlerts()
	var leds <-chan struct{} // nil: never ready
	if s.o.Board != nil {
		leds = s.o.Board.Changed()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.events:
			s.count(e)
			s.Changed()
		case <-blocks:
			s.Changed()
		case <-alerted:
			s.Changed()
		case <-leds:
			s.Changed()
		}
	}
}

func (s *Server) watchBlocklist() (<-chan struct{}, func()) {
	if s.o.Blocklist == nil {
		return nil, func() {}
	}
	return s.o.Blocklist.Watch()
}

func (s *Server) watchAlerts() (<-chan struct{}, func()) {
	if s.o.Alerts == nil {
		return nil, func() {}
	}
	return s.o.Alerts.Watch()
}

// Changed tells open pages to refresh.
func (s *Server) Changed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
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
	s.mux.HandleFunc("GET /api/leases", s.handleLeases)
	s.mux.HandleFunc("GET /api/clock", s.handleClock)
	s.mux.HandleFunc("GET /api/history", s.handleHistory)
	s.mux.HandleFunc("GET /api/budget", s.handleBudget)
	s.mux.HandleFunc("GET /api/peers", s.loggedIn(s.handlePeers))
	s.mux.HandleFunc("GET /api/crowdsec", s.loggedIn(s.handleCrowdSec))
	s.mux.HandleFunc("GET /api/vpn", s.loggedIn(s.handleVPN))
	s.mux.HandleFunc("GET /api/vpn/peer/{file}", s.loggedIn(s.handleVPNConf))
	s.mux.HandleFunc("GET /api/vpn/peer/{name}/qr.png", s.loggedIn(s.handleVPNQR))
	s.mux.HandleFunc("POST /api/vpn/peer/{name}/rotate", s.action(s.handleVPNRotate))
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
	s.mux.HandleFunc("GET /api/backups", s.handleBackups)
	s.mux.HandleFunc("GET /dr-sheet", s.handleDRSheet)
	s.mux.HandleFunc("GET /dr-sheet.txt", s.handleDRSheetText)
	s.mux.HandleFunc("GET /dr-sheet.css", handleDRSheetCSS)
	s.mux.HandleFunc("GET /api/diag", s.loggedIn(s.handleDiag))
	s.mux.HandleFunc("POST /api/diag/ping", s.action(s.handlePing))
	s.mux.HandleFunc("POST /api/diag/traceroute", s.action(s.handleTraceroute))
	s.mux.HandleFunc("POST /api/diag/dns", s.action(s.handleDNSLookup))
	s.mux.HandleFunc("POST /api/diag/sip", s.action(s.handleSIPOptions))
	s.mux.HandleFunc("POST /api/diag/capture", s.action(s.handleCapture))
	s.mux.HandleFunc("GET /api/config", s.loggedIn(s.handleConfig))
	s.mux.HandleFunc("GET /api/config/version", s.loggedIn(s.handleConfigVersion))
	// A config may be 1 MiB; in a JSON string its quotes and newlines grow it.
	s.mux.HandleFunc("POST /api/config/check", s.actionUpTo(3*config.MaxFileSize, s.handleConfigCheck))
	s.mux.HandleFunc("POST /api/config/apply", s.actionUpTo(3*config.MaxFileSize, s.handleConfigApply))
	s.mux.HandleFunc("POST /api/config/confirm", s.action(s.handleConfigConfirm))
	s.mux.HandleFunc("POST /api/config/rollback", s.action(s.handleConfigRollback))
}

// Handler serves the page and API to the LAN and the admin networks only: all of it over
// HTTPS, only the status (see plainAllowed) over plain HTTP.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Everything the page needs is served from the box itself (it may be offline).
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if r.TLS != nil {
			// Ignored by browsers for IP addresses and for a certificate they were told to
			// accept despite errors; it holds for a host name with a trusted certificate.
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
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
		if r.TLS == nil && !plainAllowed(r) {
			s.toHTTPS(w, r)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// plainAllowed says whether a request may be served over plain HTTP: reading the status and
// the metrics (monitoring, scripts, curl), which hold no secrets. The page itself, its
// session, its event stream, the downloads and every action are HTTPS only.
func plainAllowed(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case "/api/status", "/metrics", "/api/leds":
		return true
	}
	return false
}

// toHTTPS sends a plain HTTP reader to the HTTPS page, and refuses anything else: a
// password or a session sent over plain HTTP has already crossed the network in clear, and
// a redirect would only teach clients that it works.
func (s *Server) toHTTPS(w http.ResponseWriter, r *http.Request) {
	target := s.httpsURL(r)
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	httpError(w, http.StatusForbidden, "log in and act over HTTPS only: "+target)
}

// httpsURL is r's URL on the HTTPS port, under the host name r used.
func (s *Server) httpsURL(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if port := s.o.Config().Web.HTTPSPort; port != 443 && port != 0 {
		host = net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(int(port)))
	} else if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	return u.String()
}

// clientKey is what the event stream limit applies to (a login lockout's is lockKey): the
// address itself on the LAN (every LAN host must be told apart from the others, or one can
// keep all of them from the live page), and from elsewhere an IPv6 address's /64 (a host
// there picks any address of its /64 at will, and would get a fresh count with each).
func (s *Server) clientKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() || a.IsLoopback() {
		return netip.PrefixFrom(a, a.BitLen())
	}
	for _, p := range s.o.Config().LAN.Subnets() {
		if p.Contains(a) {
			return netip.PrefixFrom(a, 128)
		}
	}
	p, _ := a.Prefix(64)
	return p
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
	return s.actionUpTo(64<<10, h)
}

// actionUpTo is action for requests of up to limit bytes (a whole config file).
func (s *Server) actionUpTo(limit int64, h func(w http.ResponseWriter, r *http.Request, a actor)) http.HandlerFunc {
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
		r.Body = http.MaxBytesReader(w, r.Body, limit)
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
	res, err := s.auth.login(r.Context(), addr, req.Password)
	if err != nil {
		s.loginRefused(w, addr, res, err)
		return
	}
	ttl, _, _ := s.auth.limits()
	http.SetCookie(w, sessionCookie(res.id, int(ttl.Seconds())))
	s.record(actor{"admin", addr.String()}, "login", "", "")
	writeJSON(w, 200, map[string]any{"logged_in": true, "csrf": res.csrf})
}

// loginRefused answers a failed login. It tells people once per lockout, and once per
// series of wrong passwords: an event per refused request would let anyone push the
// blocks and failovers off the page's recent events.
func (s *Server) loginRefused(w http.ResponseWriter, addr netip.Addr, res loginResult, err error) {
	fields := map[string]string{"addr": addr.String(), "key": lockKey(addr).String()}
	if res.spentNow {
		s.publish("web.login.spent", events.Warn, "wrong passwords from several addresses spent the login budget: addresses with wrong passwords are refused for a while", fields)
	}
	switch {
	case errors.Is(err, errLocked):
		if res.lockStarted {
			s.publish("web.login.locked", events.Warn, fmt.Sprintf("logins from %s locked out for %s after wrong passwords", lockKey(addr), res.lockedFor), fields)
		}
		w.Header().Set("Retry-After", fmt.Sprint(int(res.lockedFor.Seconds())+1))
		httpError(w, http.StatusTooManyRequests, fmt.Sprintf("%v for %s", err, res.lockedFor.Round(time.Second)))
	case errors.Is(err, errNoPassword):
		httpError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, errBadLogin):
		if res.firstWrong {
			s.publish("web.login.failed", events.Info, "wrong password from "+addr.String(), fields)
		}
		httpError(w, http.StatusUnauthorized, err.Error())
	default: // the client went away while waiting
		httpError(w, http.StatusServiceUnavailable, err.Error())
	}
}

// sessionCookie is the login's cookie: Secure (HTTPS only) and HttpOnly; SameSite=Strict
// keeps other sites' requests from carrying it. maxAge -1 deletes it.
func sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, a actor) {
	s.auth.logout(r)
	http.SetCookie(w, sessionCookie("", -1))
	s.record(a, "logout", "", "")
	writeJSON(w, 200, map[string]any{"logged_in": false})
}

func (s *Server) handleForce(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Mode string `json:"mode"`
	}
	if err := readJSON(r, &req); err != nil {
		httpError(w, 400, err.Error())
		return
	}
	m, err := wan.ParseMode(req.Mode)
	if err != nil {
		httpError(w, 400, "mode must be backup, primary or auto")
		return
	}
	if _, on := s.wan(); !on || s.o.Force == nil {
		httpError(w, http.StatusServiceUnavailable, "forcing an uplink is not available: failover (wan) is off")
		return
	}
	before := s.mode()
	// The wan takes the override in its own loop: a wan that is stopping must not hold the
	// request for long.
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.o.Force(ctx, m); err != nil {
		s.publish("web.force.failed", events.Warn, "forcing "+req.Mode+" failed: "+err.Error(), map[string]string{"mode": req.Mode})
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("force %s: %v", m, err))
		return
	}
	s.record(a, "uplink.force", before, string(m))
	s.publish("web.force", events.Info, "uplink mode set to "+req.Mode+" from the status page", map[string]string{"mode": req.Mode})
	writeJSON(w, 200, map[string]string{"mode": string(m)})
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

// blocklistError answers a refused or failed change of the blocklist with the owner's own
// words, which name the prefix: a refusal names the rule that protects the address, or the
// widest network allowed. Other errors get code: the owner has no sentinel for "not
// blocked", which an unblock answers as a conflict.
func blocklistError(w http.ResponseWriter, what string, err error, code int) {
	switch {
	case errors.Is(err, netcfg.ErrProtected), errors.Is(err, netcfg.ErrTooWide):
		httpError(w, http.StatusConflict, err.Error())
	case errors.Is(err, netcfg.ErrOwnerStopped):
		httpError(w, http.StatusServiceUnavailable, what+": "+err.Error())
	default:
		httpError(w, code, err.Error())
	}
}

// by names who changed the blocklist, as the owner records it on the claim.
func (a actor) by() string { return fmt.Sprintf("%s (web %s)", a.who, a.from) }

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
	if req.For = strings.TrimSpace(req.For); req.For != "" {
		var err error
		if d, err = time.ParseDuration(req.For); err != nil || d < time.Millisecond {
			httpError(w, 400, fmt.Sprintf("%q is not a duration like 30m or 24h", req.For))
			return
		}
	}
	if s.o.Blocklist == nil {
		httpError(w, http.StatusServiceUnavailable, "the blocklist is not available")
		return
	}
	reason := cmp.Or(strings.TrimSpace(req.Reason), "blocked on the status page")
	e, err := s.o.Blocklist.Block(netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceManual, By: a.by(), Reason: reason, For: d})
	if err != nil {
		blocklistError(w, "block "+canonical(p), err, http.StatusInternalServerError)
		return
	}
	addr := canonical(e.Prefix)
	s.record(a, "block", "", fmt.Sprintf("%s for %s (%s)", addr, forText(d), reason))
	s.publish("block.manual", events.Info, fmt.Sprintf("%s blocked by hand on the status page for %s", addr, forText(d)), map[string]string{"addr": addr, "reason": reason})
	writeJSON(w, 200, map[string]string{"blocked": addr, "for": forText(d)})
}

func forText(d time.Duration) string {
	if d == 0 {
		return "ever"
	}
	return d.String()
}

// claimsText is an entry's claims for the audit log: "manual by admin (web ...): reason; ...".
func claimsText(e netcfg.Entry) string {
	var parts []string
	for _, c := range e.Claims {
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("%s by %s: %s", c.Source, c.By, c.Reason)))
	}
	for _, f := range e.Feeds {
		parts = append(parts, netcfg.FeedSource(f))
	}
	return canonical(e.Prefix) + " (" + strings.Join(parts, "; ") + ")"
}

func (s *Server) handleUnblock(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Addr string `json:"addr"`
	}
	p, ok := readAddrRequest(w, r, &req, &req.Addr)
	if !ok {
		return
	}
	if s.o.Blocklist == nil {
		httpError(w, http.StatusServiceUnavailable, "the blocklist is not available")
		return
	}
	e, err := s.o.Blocklist.Unblock(p, a.by())
	if err != nil {
		blocklistError(w, "unblock "+canonical(p), err, http.StatusConflict)
		return
	}
	s.record(a, "unblock", claimsText(e), "")
	s.publish("block.manual.unblock", events.Info, fmt.Sprintf("%s unblocked by hand on the status page", canonical(p)), map[string]string{"addr": canonical(p)})
	writeJSON(w, 200, map[string]string{"unblocked": canonical(p)})
}

// handleAck acknowledges every alert, as a long press of the button does.
func (s *Server) handleAck(w http.ResponseWriter, r *http.Request, a actor) {
	if s.o.Alerts == nil {
		httpError(w, http.StatusServiceUnavailable, "no alerts are kept")
		return
	}
	var keys []string
	for _, al := range s.o.Alerts.List() {
		if !al.Acked {
			keys = append(keys, al.Key)
		}
	}
	s.o.Alerts.Acknowledge()
	s.record(a, "alert.acknowledge", strings.Join(keys, ", "), "")
	s.publish("alert.acknowledged", events.Info, fmt.Sprintf("%d alert(s) acknowledged on the status page", len(keys)), nil)
	writeJSON(w, 200, map[string]any{"acknowledged": len(keys)})
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
	p, err := parsePrefix(r.URL.Query().Get("addr"))
	if err != nil {
		httpError(w, 400, err.Error())
		return
	}
	key := canonical(p)
	g, _ := s.guardEntry(p)
	f, err := s.stateFile(g.Evidence)
	if err != nil {
		httpError(w, 404, "no evidence recorded for "+key)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="evidence-%s%s"`, strings.NewReplacer(":", "_", "/", "_").Replace(key), filepath.Ext(g.Evidence)))
	_, _ = io.Copy(w, f)
}

// guardEntry finds sipguard's record of a block.
func (s *Server) guardEntry(p netip.Prefix) (sipguard.Entry, bool) {
	if s.o.GuardEntries == nil {
		return sipguard.Entry{}, false
	}
	for _, g := range s.o.GuardEntries() {
		if g.Prefix.Masked() == p {
			return g, true
		}
	}
	return sipguard.Entry{}, false
}

// blockEntry finds the blocklist's entry for p (not a community list's alone).
func (s *Server) blockEntry(p netip.Prefix) (netcfg.Entry, bool) {
	if s.o.Blocklist == nil {
		return netcfg.Entry{}, false
	}
	for _, e := range s.o.Blocklist.State().Entries {
		if e.Prefix.Masked() == p {
			return e, true
		}
	}
	return netcfg.Entry{}, false
}

// handleAbuse writes an abuse report for a blocked address: sipguard's own (with the abuse
// contact it looked up), or one made from the blocklist's entry, ready to send to the abuse
// contact of the network it came from.
func (s *Server) handleAbuse(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.URL.Query().Get("addr"))
	if err != nil {
		httpError(w, 400, err.Error())
		return
	}
	g, isGuard := s.guardEntry(p)
	if f, err := s.stateFile(g.Report); err == nil {
		defer f.Close()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.Copy(w, f)
		return
	}
	e, ok := s.blockEntry(p)
	if !ok && !isGuard {
		httpError(w, 404, "no block recorded for "+canonical(p))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	s.writeReport(w, p, e, g)
}

// writeReport writes an abuse report from what the blocklist and sipguard know of a block.
func (s *Server) writeReport(w io.Writer, p netip.Prefix, e netcfg.Entry, g sipguard.Entry) {
	key := canonical(p)
	since := e.Since()
	if since.IsZero() {
		since = g.Since
	}
	fmt.Fprintf(w, "Subject: Abuse report: attacks on a telephone system from %s\n\n", key)
	fmt.Fprintf(w, "Hello,\n\nthe office edge firewall of %q saw attacks on its telephone system (SIP) from %s,\n", s.o.Config().Site, key)
	fmt.Fprintf(w, "which your network announces. The address has been blocked since %s.\n\n", since.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Reason: %s\n", cmp.Or(e.Reason(), g.Reason, "blocked by the office's administrator"))
	if g.Detail != "" {
		fmt.Fprintf(w, "Detail: %s\n", g.Detail)
	}
	if n, ok := s.packets(e.Prefix); ok {
		fmt.Fprintf(w, "Packets dropped: %d\n", n)
	}
	if len(e.Claims) > 0 {
		fmt.Fprintf(w, "\nBlocked (times in UTC):\n")
		for _, c := range e.Claims {
			fmt.Fprintf(w, "  %s  %s  %s\n", c.Since.UTC().Format(time.RFC3339), c.Source, c.Reason)
		}
	}
	if g.Evidence != "" {
		fmt.Fprintf(w, "\nA packet capture is available on request.\n")
	}
	fmt.Fprintf(w, "\nPlease stop the traffic and check the host for compromise.\n")
}

// packets is the kernel's drop counter of a blocklist entry, when it is counted.
func (s *Server) packets(p netip.Prefix) (uint64, bool) {
	if s.o.Blocklist == nil || !p.IsValid() {
		return 0, false
	}
	n, ok := s.o.Blocklist.Packets()[p]
	return n, ok
}

// stateFile opens path only if it lies in the state directory: the paths come from another
// part's records. os.OpenInRoot also refuses a symbolic link that leads out of it.
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

func (s *Server) leds() []hal.LEDState {
	if s.o.Board == nil {
		return nil
	}
	return s.o.Board.LEDs()
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status())
}

// maxStreams bounds the open event streams, maxStreamsPerClient those of one client (by
// clientKey): a few tabs are a person, more are someone keeping others from the live page.
const (
	maxStreams          = 256
	maxStreamsPerClient = 4
)

// sseWriteTimeout bounds one write of the event stream (a variable for the tests).
var sseWriteTimeout = 30 * time.Second

// handleSSE pushes the status to an open page whenever something changes (and every 5 s, for
// the counters), at most 4 times a second.
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	ch := make(chan struct{}, 1)
	key := s.clientKey(remoteAddr(r))
	if code, err := s.openStream(ch, key); err != nil {
		httpError(w, code, err.Error())
		return
	}
	defer s.closeStream(ch, key)
	// A page that stops reading (a laptop gone to sleep) would block a write for as long as
	// its connection stays open, holding one of the streams: each write gets a deadline.
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{})
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		b := s.statusJSON()
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

// openStream registers an event stream of a client, within the limits; the code answers a refusal.
func (s *Server) openStream(ch chan struct{}, key netip.Prefix) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[key] >= maxStreamsPerClient {
		return http.StatusTooManyRequests, fmt.Errorf("%d status pages already open from %s: close one", maxStreamsPerClient, key)
	}
	if len(s.clients) >= maxStreams { // each open page costs a status snapshot every few seconds
		return http.StatusServiceUnavailable, errors.New("too many open status pages")
	}
	s.clients[ch] = struct{}{}
	s.streams[key]++
	return 0, nil
}

// closeStream forgets an event stream.
func (s *Server) closeStream(ch chan struct{}, key netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, ch)
	if s.streams[key]--; s.streams[key] <= 0 {
		delete(s.streams, key)
	}
}

// snapshotAge bounds how long the streams share one status: the counters move between
// wake-ups.
const snapshotAge = time.Second

// statusJSON is the status for the event streams: one snapshot serves every open page until
// something changes, so many pages cost little more than one.
func (s *Server) statusJSON() []byte {
	s.mu.Lock()
	snap, gen := s.snap, s.gen
	s.mu.Unlock()
	if snap.b != nil && snap.gen == gen && time.Since(snap.at) < snapshotAge {
		return snap.b
	}
	b, _ := json.Marshal(s.status())
	s.mu.Lock()
	if gen >= s.snap.gen { // a snapshot begun after a later change is newer than this one
		s.snap = snapshot{b: b, gen: gen, at: time.Now()}
	}
	s.mu.Unlock()
	return b
}
