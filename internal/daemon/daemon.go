// Package daemon runs the appliance: it reconciles the box to its configuration and keeps it there.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/notify"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// Options are the daemon's command-line settings.
type Options struct {
	ConfigPath    string
	StateDir      string // survives reboots: /var/lib/appliance, /perm/appliance on the image
	ControlSocket string // unix socket of the local control API used by the CLI
	Log           *slog.Logger
}

// App is what the running parts of the appliance share.
type App struct {
	Options
	Bus      *events.Bus
	Firewall *netcfg.Firewall
	// The parts, made in Run in the order they depend on each other.
	Owner  *netcfg.Owner // the one writer of nftables, links and routes
	Alerts *alerts.Store // what needs a person (part failures, hardware, drift)
	WAN    *wan.Service  // nil when wan is off
	Audit  *audit.Log
	Mail   *notify.Notifier
	HAL    *halService      // LEDs, button and the simulated board
	Guard  *sipGuardService // nil when sipguard is off
	// Control is the local control API (a unix socket, root only): parts add their handlers.
	Control *http.ServeMux

	mu  sync.RWMutex
	cfg *config.Config
}

// Config is the configuration in force.
func (a *App) Config() *config.Config {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cfg
}

// Service is a long-running part of the appliance (wan, sipguard, web, ...).
type Service interface {
	// Run works until ctx ends; an error stops the whole daemon.
	Run(ctx context.Context) error
}

// Reloader is a Service that takes a new configuration without a restart.
type Reloader interface {
	Reload(cfg *config.Config) error
}

// A Factory makes a service for the app; it returns nil when the part is switched off.
type Factory func(app *App) (Service, error)

var factories = map[string]Factory{}

// Register adds a part of the appliance; each part calls it from an init function in its own
// file of this package, so parts can be added without touching each other.
func Register(name string, f Factory) { factories[name] = f }

// Run applies the configuration and serves until ctx ends. The firewall stays in the kernel
// when it returns, or if the process dies: the box fails closed. SIGHUP reloads the file; a
// bad file is reported and the running firewall stays as it was.
func Run(ctx context.Context, o Options) error {
	// Caught from the start: a SIGHUP's default action would kill a daemon still starting.
	// One that comes early is acted on once the parts run.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	if o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
			return fmt.Errorf("daemon: state directory: %w", err)
		}
	}
	app := &App{Options: o, Bus: events.New(1000), Firewall: netcfg.New(0), Control: http.NewServeMux(), cfg: cfg}
	if err := app.apply(cfg); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	// On every return, the started parts stop and finish their cleanup (wan hands the routes
	// back) before the process can exit, also when a later part fails to start.
	defer func() { cancel(); wg.Wait() }()
	fail := func(err error) { errOnce.Do(func() { runErr = err; cancel() }) }
	var svcs []Service
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s, err := factories[n](app)
		if err != nil {
			return fmt.Errorf("daemon: start %s: %w", n, err)
		}
		if s == nil {
			continue
		}
		svcs = append(svcs, s)
		wg.Add(1)
		go func(n string, s Service) {
			defer wg.Done()
			if err := s.Run(ctx); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("daemon: %s: %w", n, err))
			}
		}(n, s)
	}
	if o.ControlSocket != "" {
		stop, err := app.serveControl()
		if err != nil {
			return err
		}
		defer stop()
	}
	o.Log.Info("appliance running", "config", o.ConfigPath, "pid", os.Getpid())

	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			o.Log.Info("appliance stopping; the firewall stays in place")
			return runErr
		case <-hup:
			app.reload(svcs)
		}
	}
}

func (a *App) reload(svcs []Service) {
	next, err := config.Load(a.ConfigPath)
	if err == nil {
		err = a.apply(next)
	}
	if err != nil {
		a.Log.Error("reload refused, the running configuration is unchanged", "err", err)
		a.Bus.Publish(events.Event{Kind: "config.rejected", Severity: events.Warn, Source: "daemon", Message: err.Error()})
		return
	}
	for _, s := range svcs {
		if r, ok := s.(Reloader); ok {
			if err := r.Reload(next); err != nil {
				a.Log.Error("reload", "err", err)
			}
		}
	}
	a.Log.Info("configuration reloaded")
	a.Bus.Publish(events.Event{Kind: "config.changed", Source: "daemon", Message: "configuration reloaded from " + a.ConfigPath})
}

func (a *App) apply(cfg *config.Config) error {
	for _, w := range cfg.Warnings {
		a.Log.Warn(w)
	}
	// The firewall goes in before the links come up, so no packet crosses an open box.
	if err := a.Firewall.Apply(netcfg.Build(cfg)); err != nil {
		return err
	}
	warnings, err := netcfg.ApplyLinks(cfg)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	for _, w := range warnings {
		a.Log.Warn(w)
	}
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	a.Log.Info("firewall applied", "table", "inet "+netcfg.TableName)
	return nil
}

// serveControl serves the control API on a unix socket only root can reach.
func (a *App) serveControl() (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(a.ControlSocket), 0o700); err != nil {
		return nil, fmt.Errorf("daemon: control socket: %w", err)
	}
	_ = os.Remove(a.ControlSocket) // a socket left by a crashed daemon
	ln, err := net.Listen("unix", a.ControlSocket)
	if err != nil {
		return nil, fmt.Errorf("daemon: control socket: %w", err)
	}
	if err := os.Chmod(a.ControlSocket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("daemon: control socket: %w", err)
	}
	srv := &http.Server{Handler: a.Control, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.Log.Error("control socket", "err", err)
		}
	}()
	return func() { _ = srv.Close(); _ = os.Remove(a.ControlSocket) }, nil
}
