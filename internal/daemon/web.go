package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/mdlayher/netx/multinet"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/web"
	"github.com/officeedge/appliance/netcfg"
)

func init() {
	Register("web", func(app *App) (Service, error) {
		if app.Config().WebPort() == 0 {
			return nil, nil
		}
		return &webService{app: app, reload: make(chan struct{}, 1)}, nil
	})
}

type webService struct {
	app    *App
	srv    *web.Server
	reload chan struct{}
}

func writeJSONResp(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// controlGet answers a GET on the control API in process, or nil when nothing serves it.
func (w *webService) controlGet(path string) json.RawMessage {
	req, err := http.NewRequest("GET", path, nil)
	if err != nil {
		return nil
	}
	rec := &controlRecorder{header: http.Header{}, code: 200}
	w.app.Control.ServeHTTP(rec, req)
	if rec.code != 200 || !json.Valid(rec.body.Bytes()) {
		return nil
	}
	return json.RawMessage(rec.body.Bytes())
}

// webFirewall unblocks through sipguard when it holds the block (so its own list and
// evidence stay consistent), and directly in the kernel otherwise.
type webFirewall struct{ app *App }

func (f webFirewall) Blocklist() ([]netcfg.Blocked, error)        { return f.app.Firewall.Blocklist() }
func (f webFirewall) Block(p netip.Prefix, d time.Duration) error { return f.app.Firewall.Block(p, d) }
func (f webFirewall) Unblock(p netip.Prefix) error {
	req, err := http.NewRequest("POST", "/sipguard/unblock?addr="+url.QueryEscape(p.String()), nil)
	if err == nil {
		rec := &controlRecorder{header: http.Header{}, code: 200}
		f.app.Control.ServeHTTP(rec, req)
		if rec.code < 300 {
			return nil
		}
	}
	return f.app.Firewall.Unblock(p)
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

// webListen binds every address with IP_FREEBIND: an IPv6 address still in duplicate address
// detection (or one not yet configured) cannot be bound otherwise, and the page must come up
// with the box rather than fail because the LAN came up a moment later.
func webListen(ctx context.Context, addrs []netip.Addr, port config.Port) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	var ls []net.Listener
	for _, a := range addrs {
		network := "tcp4"
		if a.Is6() {
			network = "tcp6"
		}
		ln, err := lc.Listen(ctx, network, net.JoinHostPort(a.String(), strconv.Itoa(int(port))))
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

func (w *webService) Run(ctx context.Context) error {
	p := partsOf(w.app)
	o := web.Options{
		Config: w.app.Config, Bus: w.app.Bus, Firewall: webFirewall{w.app}, Uplinks: controlUplinks{w.app},
		Audit: p.audit, WANStatus: func() json.RawMessage { return w.controlGet("/wan/status") },
		GuardBlocked: func() json.RawMessage { return w.controlGet("/sipguard/blocked") },
		StateDir:     w.app.StateDir, Log: w.app.Log,
	}
	if p.hal != nil {
		o.Board = halBoard{p.hal}
	}
	if p.mail != nil {
		o.Mail = p.mail.Status
	}
	w.srv = web.New(o)
	go w.srv.Run(ctx, p.panel.Changed())
	for {
		cfg := w.app.Config()
		addrs, port := webAddrs(cfg), cfg.WebPort()
		if port == 0 { // switched off by a reload: wait for the next one
			select {
			case <-ctx.Done():
				return nil
			case <-w.reload:
				continue
			}
		}
		ln, err := webListen(ctx, addrs, port)
		if err != nil {
			// The page is not worth stopping the box for (a busy port, an address not there):
			// say so and try again on the next reload or in a while.
			w.app.Log.Error("status page", "err", err)
			w.app.Bus.Publish(events.Event{Kind: "web.error", Severity: events.Alert, Source: "web", Message: "status page unavailable: " + err.Error()})
			select {
			case <-ctx.Done():
				return nil
			case <-w.reload:
			case <-time.After(30 * time.Second):
			}
			continue
		}
		sctx, stop := context.WithCancel(ctx)
		hs := &http.Server{Handler: w.srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			BaseContext: func(net.Listener) context.Context { return sctx }} // open event streams end with it
		served := make(chan error, 1)
		go func() { served <- hs.Serve(ln) }()
		w.app.Log.Info("status page listening", "addrs", ln.Addr().String())
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case err := <-served:
				stop()
				return fmt.Errorf("web: %w", err)
			case <-w.reload:
				// New addresses or port: listen again (open pages reconnect by themselves).
				if c := w.app.Config(); !sameAddrs(addrs, webAddrs(c)) || port != c.WebPort() {
					break wait
				}
			}
		}
		stop()
		shctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if hs.Shutdown(shctx) != nil {
			_ = hs.Close() // connections still open after the grace period must not outlive the listener
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Reload listens again when the page's addresses or port changed; everything else (who may
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
