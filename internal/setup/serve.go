package setup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/internal/cfgedit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/setupcode"
	"github.com/officeedge/appliance/internal/web"
)

// Options are the setup state's settings (the daemon's command line).
type Options struct {
	LAN           string        // the setup LAN interface (--setup-lan)
	ConfigPath    string        // where the first config is written (--writable-config)
	StateDir      string        // the setup code, the HTTPS certificate (shared with the daemon's page)
	ConfirmWindow time.Duration // the first config's time to be confirmed (0: cfgedit's default)
	BootErrors    []string      // the errors of a config rejected on the boot partition
	Version       string
	Log           *slog.Logger
	// Console gets the line with the address and the code, at start and every minute (the
	// log gets it too); nil: the log only.
	Console io.Writer
}

// announceEvery is how often the code is printed on the console while in the setup state.
const announceEvery = time.Minute

// Serve is the setup state: the firewall closed to all but the LAN, the LAN's address and
// DHCP, and the setup page on the LAN addresses only, until a first config is written (it
// returns nil) or ctx ends (ctx's error).
func Serve(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	code, err := setupcode.Load(o.StateDir)
	if err != nil {
		return err
	}
	// The firewall first: nothing answers on the uplinks from here on.
	if err := applyFirewall(0, o.LAN); err != nil {
		return err
	}
	o.Log.Info("setup: firewall loaded: only the LAN reaches the box", "lan", o.LAN)
	if err := upLAN(o.LAN); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &state{o: o, code: code, certs: web.NewCerts(o.StateDir), done: make(chan struct{}), errs: make(chan error, 1)}
	guard := NewGuard(code)
	page := NewPage(PageOptions{
		Check:      guard.Check,
		Interfaces: func() []string { return Interfaces(o.LAN) },
		BootErrors: func() []string { return o.BootErrors },
		Apply:      s.apply,
		Version:    o.Version,
		LAN:        o.LAN,
		ServesDHCP: s.servesDHCP.Load,
		Log:        o.Log,
	})
	s.secure = &http.Server{Handler: page, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug)}
	s.plain = &http.Server{Handler: redirect(page), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug)}
	s.secure.TLSConfig = s.certs.TLSConfig()
	lan := make(chan error, 1)
	go func() {
		lan <- runLAN(ctx, o.LAN, o.Log, func(p netip.Prefix) {
			if err := s.listen(ctx, p.Addr()); err != nil {
				s.fail(err)
				return
			}
			s.announce()
		}, func() { s.servesDHCP.Store(true) })
	}()
	tick := time.NewTicker(announceEvery)
	defer tick.Stop()
	var result error
loop:
	for {
		select {
		case <-ctx.Done():
			result = ctx.Err()
			break loop
		case <-s.done:
			o.Log.Info("setup: first config written: starting the appliance", "config", o.ConfigPath)
			break loop
		case err := <-s.errs:
			result = err
			break loop
		case err := <-lan:
			if err != nil && ctx.Err() == nil {
				// Without DHCP the page is still there on 192.168.1.1 for a PC set by hand.
				o.Log.Error("setup: DHCP on the LAN", "err", err)
			}
			lan = nil
		case <-tick.C:
			s.announce()
		}
	}
	// The page answers the request that wrote the config before its servers close.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = s.secure.Shutdown(sctx)
	_ = s.plain.Shutdown(sctx)
	cancel()
	if lan != nil {
		<-lan
	}
	return result
}

// state is the running setup state.
type state struct {
	o     Options
	code  string
	certs *web.Certs

	plain, secure *http.Server

	servesDHCP atomic.Bool // no other DHCP server answered: the box serves the LAN (and so will its first config)

	mu      sync.Mutex
	addrs   []netip.Addr // the page's addresses
	applied bool
	done    chan struct{} // closed when the first config is written
	errs    chan error    // the first failure of a server: the setup state ends with it
}

// fail ends the setup state with err (the first failure is enough).
func (s *state) fail(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// listen serves the page on a (ports 443 and 80), with a certificate naming every address.
func (s *state) listen(ctx context.Context, a netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.addrs {
		if have == a {
			return nil
		}
	}
	cfg := &config.Config{LAN: config.LAN{Interface: s.o.LAN}}
	for _, x := range append(s.addrs, a) {
		cfg.LAN.Addresses = append(cfg.LAN.Addresses, config.Prefix{Prefix: netip.PrefixFrom(x, x.BitLen())})
	}
	// The box's own certificate, as the daemon's page makes it (and kept in the same file:
	// the daemon reuses it when its names are the same).
	if err := s.certs.Ensure(cfg); err != nil {
		s.o.Log.Error("setup: HTTPS certificate", "err", err)
	}
	sec, err := bind.ListenFree(ctx, netip.AddrPortFrom(a, 443))
	if err != nil {
		return fmt.Errorf("setup: listen on %s:443: %w", a, err)
	}
	pl, err := bind.ListenFree(ctx, netip.AddrPortFrom(a, 80))
	if err != nil {
		sec.Close()
		return fmt.Errorf("setup: listen on %s:80: %w", a, err)
	}
	s.addrs = append(s.addrs, a)
	go func() {
		if err := s.secure.Serve(tls.NewListener(sec, s.secure.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.fail(fmt.Errorf("setup: serve https on %s: %w", a, err))
		}
	}()
	go func() {
		if err := s.plain.Serve(pl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.fail(fmt.Errorf("setup: serve http on %s: %w", a, err))
		}
	}()
	s.o.Log.Info("setup: page listening", "https", sec.Addr().String(), "http", pl.Addr().String())
	return nil
}

// announce prints where the page is and the code, on the console and in the log.
func (s *state) announce() {
	s.mu.Lock()
	var urls []string
	for _, a := range s.addrs {
		urls = append(urls, "https://"+a.String()+"/")
	}
	s.mu.Unlock()
	if len(urls) == 0 {
		return
	}
	where := urls[0]
	if len(urls) > 1 {
		where += " (or " + strings.Join(urls[1:], " or ") + ")"
	}
	line := fmt.Sprintf("appliance setup: open %s on the LAN; setup code: %s", where, setupcode.Show(s.code))
	s.o.Log.Info(line)
	if s.o.Console != nil {
		_, _ = io.WriteString(s.o.Console, line+"\n")
	}
}

// apply writes the first config (cfgedit.First) and ends the setup state once the page has
// answered. A refused candidate is a *cfgedit.CheckError.
func (s *state) apply(_ context.Context, candidate []byte, by string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied {
		return cfgedit.ErrExists
	}
	p, err := cfgedit.First(cfgedit.Options{Path: s.o.ConfigPath, Window: s.o.ConfirmWindow}, candidate, by)
	if err != nil {
		return err
	}
	s.applied = true
	s.o.Log.Info("setup: first config written; it is put back unless confirmed on the status page", "by", by, "deadline", p.Deadline)
	close(s.done)
	return nil
}

// redirect is the plain HTTP side: /api/status answers there too (a script's check), the
// rest goes to the same path over HTTPS.
func redirect(page http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/api/status" {
			page.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			a = LANAddress.Addr() // a name we do not know: the box's setup address
		}
		h := a.String()
		if a.Is6() {
			h = "[" + h + "]"
		}
		http.Redirect(w, r, "https://"+h+"/", http.StatusFound)
	})
}
