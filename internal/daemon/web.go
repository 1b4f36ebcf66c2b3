package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/mdlayher/netx/multinet"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/internal/calls"
	"github.com/officeedge/appliance/internal/clock"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/crowdsec"
	"github.com/officeedge/appliance/internal/diag"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/history"
	"github.com/officeedge/appliance/internal/peers"
	"github.com/officeedge/appliance/internal/shaper"
	"github.com/officeedge/appliance/internal/web"
	"github.com/officeedge/appliance/sipguard"
	"github.com/officeedge/appliance/wan"
)

// keyWebListen is the alert raised while the status page cannot listen; keyWebTLS while its
// HTTPS certificate is not the one wanted (it cannot be saved, [web] cert_file is unusable).
const (
	keyWebListen = "web.listen"
	keyWebTLS    = "web.tls"
)

// certCheckEvery is how often the certificate is looked at between reloads, so that the
// box's own one is renewed before its end on a box that runs for years.
const certCheckEvery = 24 * time.Hour

// errWebParts means the daemon made the web part before the alerts it raises.
var errWebParts = errors.New("daemon: the web part needs the alerts")

// webService serves the status page; it reads the other parts' typed state directly.
type webService struct {
	app    *App
	srv    *web.Server
	certs  *web.Certs
	reload chan struct{}
}

// newWebPart makes the status page's part, or nil when [web] port is 0. The parts the page
// shows (app.WAN, app.Owner, app.Alerts, app.Guard, app.HAL, app.Mail, app.Audit) must be
// set before: the page reads them through the App at each request.
func newWebPart(app *App) (*webService, error) {
	if app.Config().WebPort() == 0 {
		return nil, nil
	}
	if app.Alerts == nil {
		return nil, errWebParts
	}
	o := webOptions(app)
	o.Certs = web.NewCerts(app.StateDir)
	return &webService{app: app, srv: web.New(o), certs: o.Certs, reload: make(chan struct{}, 1)}, nil
}

// webOptions connects the page to the parts, each read where it is: nothing goes through
// the control API.
func webOptions(app *App) web.Options {
	o := web.Options{
		Config: app.Config, Bus: app.Bus, Audit: app.Audit, Alerts: app.Alerts, StateDir: app.StateDir, Log: app.Log,
		WAN:          func() (wan.Status, bool) { return wanStatus(app) },
		Guard:        func() (sipguard.Stats, int, bool) { return guardStats(app) },
		GuardEntries: func() []sipguard.Entry { return guardEntries(app) },
		Backups:      func() (backup.Status, bool) { return backupStatus(app) },
		Clock:        func() (clock.State, bool) { return clockState(app) },
		History:      func() *history.Store { return historyStore(app) },
		Budgets:      func() []history.UplinkUsage { return budgetUsage(app) },
		Peers: func() []peers.Name {
			if r := app.Peers.Load(); r != nil {
				return r.Status()
			}
			return nil
		},
		CrowdSec: func() (crowdsec.Status, bool) {
			if s := app.CrowdSec.Load(); s != nil {
				return s.Status(), true
			}
			return crowdsec.Status{}, false
		},
	}
	o.DHCP, o.DHCPCounters, o.DNS = app.dhcpStatus, app.dhcpCounters, app.dnsStats
	o.VPN = func() (web.VPN, bool) { return vpnWeb(app) }
	o.Calls = func() (calls.Status, bool) { return callsStatus(app) }
	o.Relay = func() (web.Relay, bool) { return relayWeb(app) }            // relay.go
	o.Shaper = func() ([]shaper.Status, bool) { return shaperStatus(app) } // shaper.go
	o.Collectors = append(o.Collectors, voiceMoveCollector(app))           // voicemove.go
	o.ConfigEdit, o.ConfigPath = app.Edits, app.ConfigPath
	o.Uplinks = func() []diag.Uplink { return diagUplinks(app) }
	if app.Owner != nil {
		o.Blocklist = app.Owner
	}
	o.Board = liveBoard{app}
	o.Actions = app.actions()
	if app.Mail != nil {
		o.Mail = app.Mail.Status
	}
	return o
}

// liveBoard is the page's board: the hal part in force at each call, since a reload that
// changes [hal] replaces it while the page keeps its options for good.
type liveBoard struct{ app *App }

func (b liveBoard) Name() string {
	if h := b.app.HAL.Load(); h != nil {
		return h.Name()
	}
	return "none"
}

func (b liveBoard) LEDs() []hal.LEDState {
	if h := b.app.HAL.Load(); h != nil {
		return h.LEDs()
	}
	return nil
}

func (b liveBoard) Press(long bool) error {
	if h := b.app.HAL.Load(); h != nil {
		return h.Press(long)
	}
	return web.ErrNoButton
}

// Changed is the same channel whichever hal part is in force (each hands it to the next).
func (b liveBoard) Changed() <-chan struct{} {
	if h := b.app.HAL.Load(); h != nil {
		return h.Changed()
	}
	return nil
}

func wanStatus(app *App) (wan.Status, bool) {
	if app.WAN == nil {
		return wan.Status{}, false
	}
	return app.WAN.Status(), true
}

func wanForce(ctx context.Context, app *App, m wan.Mode) error {
	if app.WAN == nil {
		return errWANOff
	}
	return app.WAN.Force(ctx, m)
}

func guardStats(app *App) (sipguard.Stats, int, bool) {
	g := app.guard()
	if g == nil {
		return sipguard.Stats{}, 0, false
	}
	st, n := g.g.Snapshot()
	return st, n, true
}

func guardEntries(app *App) []sipguard.Entry {
	g := app.guard()
	if g == nil {
		return nil
	}
	return g.g.Blocked()
}

// webAddrs are the box's own addresses the page is served on: the LAN's, the uplinks'
// static ones (for the admin networks), and any listed in [web].
func webAddrs(c *config.Config) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range c.LAN.Addresses {
		add(a.Addr())
	}
	if c.Web.Uplinks {
		for _, u := range c.Uplink.All() {
			if u.Mode == "static" {
				add(u.Address.Addr())
				add(u.Address6.Addr())
			}
		}
	}
	for _, a := range c.Web.Listen {
		add(a.Addr)
	}
	return out
}

// webPorts are the page's plain HTTP and HTTPS ports.
type webPorts struct{ http, https config.Port }

func portsOf(c *config.Config) webPorts { return webPorts{c.WebPort(), c.Web.HTTPSPort} }

// webListen binds every address with IP_FREEBIND: an IPv6 address still in duplicate address
// detection (or one not yet configured) cannot be bound otherwise, and the page must come up
// with the box rather than fail because the LAN came up a moment later.
func webListen(ctx context.Context, addrs []netip.Addr, port config.Port) (net.Listener, error) {
	var ls []net.Listener
	for _, a := range addrs {
		ln, err := bind.ListenFree(ctx, netip.AddrPortFrom(a, uint16(port)))
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("web: listen on %s: %w", a, err)
		}
		ls = append(ls, ln)
	}
	return multinet.Listen(ls...), nil
}

// Run serves the page until ctx ends (then it returns nil); an error means the server
// failed and the part wants a restart.
func (w *webService) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() { defer close(followed); _ = w.srv.Run(ctx) }()
	defer func() { cancel(); <-followed }()
	for {
		cfg := w.app.Config()
		addrs, ports := webAddrs(cfg), portsOf(cfg)
		if ports.http == 0 { // switched off by a reload: wait for the next one
			select {
			case <-ctx.Done():
				return nil
			case <-w.reload:
				continue
			}
		}
		w.ensureCert(cfg)
		ln, err := listenBoth(ctx, addrs, ports)
		if err != nil {
			w.listenFailed(err)
			select {
			case <-ctx.Done():
				return nil
			case <-w.reload:
			case <-time.After(30 * time.Second):
			}
			continue
		}
		w.app.Alerts.Clear(keyWebListen)
		if err := w.serve(ctx, ln, addrs, ports); err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// listenBoth listens on the addresses for plain HTTP and for HTTPS.
func listenBoth(ctx context.Context, addrs []netip.Addr, ports webPorts) ([2]net.Listener, error) {
	plain, err := webListen(ctx, addrs, ports.http)
	if err != nil {
		return [2]net.Listener{}, err
	}
	secure, err := webListen(ctx, addrs, ports.https)
	if err != nil {
		plain.Close()
		return [2]net.Listener{}, err
	}
	return [2]net.Listener{plain, secure}, nil
}

// ensureCert makes the HTTPS certificate fit the configuration; a problem is an alert, and
// a certificate is served anyway (see web.Certs.Ensure).
func (w *webService) ensureCert(cfg *config.Config) {
	if err := w.certs.Ensure(cfg); err != nil {
		msg := "status page certificate: " + err.Error()
		w.app.Log.Error("status page certificate", "err", err)
		w.app.Alerts.Raise(keyWebTLS, "web", msg)
		return
	}
	w.app.Alerts.Clear(keyWebTLS)
	if ci, ok := w.certs.Info(); ok {
		w.app.Log.Info("status page certificate", "sha256", ci.Fingerprint, "names", ci.Names, "not_after", ci.NotAfter)
	}
}

// listenFailed says the page is unavailable: it is not worth stopping the box for (a busy
// port, an address not there), and is tried again on the next reload or in a while.
func (w *webService) listenFailed(err error) {
	msg := "status page unavailable: " + err.Error()
	w.app.Log.Error("status page", "err", err)
	w.app.Alerts.Raise(keyWebListen, "web", msg)
	w.app.Bus.Publish(events.Event{Kind: "web.error", Severity: events.Alert, Source: "web", Message: msg})
}

// serve serves plain HTTP on ln[0] and HTTPS on ln[1] until ctx ends (nil), the server fails
// (its error), or a reload changes the addresses or the ports (nil, to listen again). A
// reload that changes only the certificate's names swaps the certificate in place.
func (w *webService) serve(ctx context.Context, ln [2]net.Listener, addrs []netip.Addr, ports webPorts) error {
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	// One server per port: sharing one, the plain listener's Serve can run HTTP/2's one-time
	// set-up first, in its non-TLS form, and HTTPS then offers h2 with nothing to serve it.
	server := func(tc *tls.Config) *http.Server {
		return &http.Server{Handler: w.srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			TLSConfig: tc,
			// A browser that does not yet trust the box's own certificate, and every scanner,
			// fails a handshake: worth a debug line, not a line on the console each time.
			ErrorLog:    slog.NewLogLogger(w.app.Log.Handler(), slog.LevelDebug),
			BaseContext: func(net.Listener) context.Context { return sctx }} // open event streams end with it
	}
	plain, secure := server(nil), server(w.certs.TLSConfig())
	served := make(chan error, 2)
	go func() { served <- plain.Serve(ln[0]) }()
	go func() { served <- secure.ServeTLS(ln[1], "", "") }() // the certificate comes from TLSConfig
	w.app.Log.Info("status page listening", "http", ln[0].Addr().String(), "https", ln[1].Addr().String())
	defer shutdown(stop, plain, secure)
	check := time.NewTicker(certCheckEvery)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			return fmt.Errorf("web: serve: %w", err)
		case <-check.C:
			w.ensureCert(w.app.Config())
		case <-w.reload:
			// New addresses or ports: listen again (open pages reconnect by themselves).
			c := w.app.Config()
			if !sameAddrs(addrs, webAddrs(c)) || ports != portsOf(c) {
				return nil
			}
			w.ensureCert(c)
		}
	}
}

// shutdown ends the open event streams, then the server, within a grace period.
func shutdown(stopStreams func(), servers ...*http.Server) {
	stopStreams()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, hs := range servers {
		if hs.Shutdown(ctx) != nil {
			_ = hs.Close() // connections still open after the grace period must not outlive the listener
		}
	}
}

// Reload listens again when the page's addresses or ports changed, and makes the certificate
// again when the box's addresses or names changed; everything else (who may
// log in, lockout, admin networks) is read from the configuration at each request.
func (w *webService) Reload(*config.Config) error {
	select {
	case w.reload <- struct{}{}:
	default:
	}
	return nil
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
