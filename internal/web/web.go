// Package web serves the box's status page, its JSON API and Prometheus metrics on the LAN and admin addresses.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/calls"
	"github.com/officeedge/appliance/internal/cfgedit"
	"github.com/officeedge/appliance/internal/clock"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/crowdsec"
	"github.com/officeedge/appliance/internal/dhcpd"
	"github.com/officeedge/appliance/internal/diag"
	"github.com/officeedge/appliance/internal/dnsfwd"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/history"
	"github.com/officeedge/appliance/internal/notify"
	"github.com/officeedge/appliance/internal/peers"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
	"github.com/officeedge/appliance/wan"
)

// Blocklist is the part of *netcfg.Owner the page reads (it changes it through Actions).
type Blocklist interface {
	State() *netcfg.BlockState
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
	WAN          func() (wan.Status, bool)          // wan.Service.Status; false when wan is off
	Blocklist    Blocklist                          // the firewall owner
	Guard        func() (sipguard.Stats, int, bool) // sipguard's counters and sources tracked; false when off
	GuardEntries func() []sipguard.Entry            // sipguard's records of its blocks (evidence, reports)
	Alerts       *alerts.Store
	CrowdSec     func() (crowdsec.Status, bool) // the fleet-sharing part's state; false when off
	Peers        func() []peers.Name            // trusted host names and their addresses now
	ReadFirewall func() FirewallState           // default ReadFirewall (netlink, current namespace)
	Board        Board
	Actions      Actions // force, block, unblock, acknowledge, press; nil: made from the parts above (without forcing)
	Audit        *audit.Log
	Mail         func() notify.Status
	Certs        *Certs                       // the HTTPS certificate, shown on the page; nil: none shown
	Backups      func() (backup.Status, bool) // the backups' status; false when off
	StateDir     string
	// UpdatePasswordFile is the box's own update password, shown on the DR sheet (default
	// setupcode.UpdatePasswordFile; tests point it elsewhere).
	UpdatePasswordFile string
	Log                *slog.Logger
	Now                func() time.Time

	// DHCP is the DHCP server's state and leases; false when it is off.
	DHCP func() (dhcpd.Status, bool)
	// DHCPCounters are the DHCP server's counters since it started (/metrics); false when it is off.
	DHCPCounters func() (dhcpd.Counters, bool)
	// DNS is the DNS forwarder's counters since it started (/metrics); false when it is off.
	DNS func() (dnsfwd.Stats, bool)
	// Clock is the box's clock (trusted yet, offset, last sync); false when it is not running.
	Clock func() (clock.State, bool)
	// VPN is the WireGuard part in force; false when [vpn] is off.
	VPN func() (VPN, bool)
	// Calls is the calls' measured quality (calls.go); false when [voice.calls] is off.
	Calls func() (calls.Status, bool)
	// Relay is the voice relay's box side in force; false when [relay] is off (relay.go).
	Relay func() (Relay, bool)

	// Shaper is each shaped uplink's state (shaper.go); false when none is shaped.
	Shaper shaperStatus

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

	// Collectors are more /metrics from parts that describe their own (the voice move's).
	Collectors []prometheus.Collector
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
	if o.Actions == nil {
		o.Actions = partsActions(o)
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
	s.mux.HandleFunc("GET /api/calls", s.loggedIn(s.handleCalls)) // calls.go
	s.mux.HandleFunc("GET /api/vpn/peer/{file}", s.loggedIn(s.handleVPNConf))
	s.mux.HandleFunc("GET /api/vpn/peer/{name}/qr.png", s.loggedIn(s.handleVPNQR))
	s.mux.HandleFunc("POST /api/vpn/peer/{name}/rotate", s.action(s.handleVPNRotate))
	s.mux.HandleFunc("GET /api/relay", s.loggedIn(s.handleRelay))
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

func (s *Server) leds() []hal.LEDState {
	if s.o.Board == nil {
		return nil
	}
	return s.o.Board.LEDs()
}
