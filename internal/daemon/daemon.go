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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/calls"
	"github.com/officeedge/appliance/internal/cfgedit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/crowdsec"
	"github.com/officeedge/appliance/internal/dnsfwd"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/kernelfeat"
	"github.com/officeedge/appliance/internal/notify"
	"github.com/officeedge/appliance/internal/peers"
	"github.com/officeedge/appliance/internal/relay/box"
	"github.com/officeedge/appliance/internal/shaper"
	"github.com/officeedge/appliance/internal/voicemove"
	"github.com/officeedge/appliance/internal/vpn"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// Options are the daemon's command-line settings.
type Options struct {
	ConfigPath    string
	StateDir      string // survives reboots: /var/lib/appliance, /perm/appliance on the image
	ControlSocket string // unix socket of the local control API used by the CLI
	Log           *slog.Logger
	// ConfirmWindow is how long a change made on the page waits for its confirmation before
	// it is put back (0: cfgedit.DefaultWindow; tests make it short).
	ConfirmWindow time.Duration
}

// App is what the running parts of the appliance share: each part is made in Run, in the
// order they depend on each other, and reads the ones made before it from here.
type App struct {
	Options
	Bus    *events.Bus
	Alerts *alerts.Store    // what needs a person (part failures, hardware, drift)
	Owner  *netcfg.Owner    // the one writer of nftables (who writes routes and addresses: netcfg's package doc)
	Audit  *audit.Log       //
	Mail   *notify.Notifier //
	WAN    *wan.Service     // nil when wan is off
	Guard  *sipGuardService // nil when sipguard is off; replaced when a reload restarts it
	// HAL is the LEDs, the button and the simulated board; a reload that changes [hal] replaces it.
	HAL atomic.Pointer[halService]
	// History samples the figures the page charts and counts data budgets (nil without a state dir).
	History *historyPart
	// CrowdSec is the fleet-sharing part in force (nil when off); a reload may replace it.
	CrowdSec atomic.Pointer[crowdsec.Service]
	// Peers resolves trusted host names (nil when the config has none).
	Peers atomic.Pointer[peers.Resolver]
	// Backup is the backups' part in force (nil when [backup] is off).
	Backup atomic.Pointer[backup.Service]
	// VPN is the WireGuard part in force (nil when [vpn] is off).
	VPN atomic.Pointer[vpn.Service]
	// Calls is the call-quality part in force (nil when [voice.calls] is off): calls.go.
	Calls atomic.Pointer[calls.Service]
	// Shaper is the uplinks' shaper in force (nil when no uplink has an upload rate): shaper.go.
	Shaper atomic.Pointer[shaper.Shaper]
	// Relay is the voice relay's box side in force (nil when [relay] is off); the voice-move
	// part moves the tunnel with its SetVoiceLine.
	Relay atomic.Pointer[box.Part]
	// VoiceMove is the part moving voice off a flooded line in force (nil when off): voicemove.go.
	VoiceMove atomic.Pointer[voicemove.Service]
	Kernel    []kernelfeat.Feature // what the kernel was found to have at start
	// Control is the local control API (a unix socket, root only).
	Control *http.ServeMux
	// Actions are force, block, unblock, acknowledge and press: one implementation the page,
	// the control socket and the button all call.
	Actions *control.Actions
	// Edits changes the config file from the page (nil when it cannot be kept: an alert says why).
	Edits *cfgedit.Editor

	reloading sync.Mutex // one reload at a time: SIGHUP and the page's changes
	// unset is closed when the first config (written by the setup state) was not confirmed
	// and removed: Run returns ErrSetup.
	unset     chan struct{}
	unsetOnce sync.Once

	mu    sync.RWMutex
	cfg   *config.Config
	parts *parts
}

// Config is the configuration in force.
func (a *App) Config() *config.Config {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cfg
}

// guard is the sipguard part in force (nil when off).
func (a *App) guard() *sipGuardService {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.Guard
}

// ErrSetup is Run's return when the box's first config, written by the setup state, was not
// confirmed in time and removed: the caller goes back to the setup state.
var ErrSetup = errors.New("daemon: the first config was not confirmed and was removed: back to the setup state")

// Run applies the configuration and serves until ctx ends. The firewall stays in the kernel
// when it returns, or if the process dies: the box fails closed. SIGHUP reloads the file; a
// bad file is reported and the running firewall stays as it was. A part that fails is
// restarted on its own, with backoff and an alert; only a signal stops the daemon.
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
	for _, w := range cfg.Warnings {
		o.Log.Warn(w)
	}
	app := &App{Options: o, Bus: events.New(1000), Alerts: alerts.New(nil), Control: http.NewServeMux(), cfg: cfg, unset: make(chan struct{})}
	// The box's own lookups go through the DNS part from here on (before any part dials).
	dnsfwd.UseBoxResolver()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// 1. The kernel's features, probed in a private namespace before anything writes.
	app.Kernel = detectKernel(app)
	// 2. The firewall owner: the only writer of nftables (wan and vpn write their own routes,
	// rules, addresses and links), and it runs under a supervisor of its own, so no other
	// part's failures can hold it back.
	app.Owner, err = netcfg.NewOwner(netcfg.OwnerOptions{Firewall: netcfg.New(0), StateDir: app.StateDir,
		Bus: app.Bus, Alerts: app.Alerts, Log: app.Log, Links: true, ResolvConf: "/etc/resolv.conf",
		NoReplyMarks: !kernelfeat.Has(app.Kernel, "ct mark") || !kernelfeat.Has(app.Kernel, "policy routing")})
	if err != nil {
		return err
	}
	root := suture.New("appliance", suture.Spec{EventHook: app.supervisorEvent})
	done := root.ServeBackground(ctx)
	// On every return the parts stop and finish their cleanup (wan hands the routes back)
	// before the process can exit.
	defer func() { cancel(); <-done }()
	app.parts = newParts(app, root)
	app.parts.start("firewall", func(*App) (runner, error) { return app.Owner, nil })
	// The firewall goes in before the links come up, so no packet crosses an open box; a
	// ruleset the kernel refuses at start ends the start (nothing would protect the office).
	if err := app.Owner.SetConfig(cfg); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	o.Log.Info("firewall applied", "table", "inet "+netcfg.TableName)
	app.dropStaleFeeds(cfg)
	// 3. The parts, each reading the ones above it.
	app.Audit = audit.Open(filepath.Join(app.StateDir, "audit.log"))
	app.Mail = &notify.Notifier{Config: app.Config, Dir: filepath.Join(app.StateDir, "mailq"), Bus: app.Bus, Log: app.Log}
	app.Actions = app.newActions()
	app.parts.startAll()
	app.auditConfig("unknown (changed while the appliance was stopped)")
	if o.ControlSocket != "" {
		app.routes()
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
			o.Log.Info("appliance stopping; the firewall stays in place")
			return nil
		case <-hup:
			app.reload()
		case <-app.unset:
			o.Log.Warn("the first config was not confirmed: back to the setup state")
			return ErrSetup
		}
	}
}

// reload reconciles every part to the file: the firewall first (a refusal changes nothing),
// then each part is reloaded in place, started, stopped or restarted as its settings
// demand, and what only a restart of the daemon takes is said.
func (a *App) reload() { _ = a.reloadAs("root (SIGHUP reload)") }

// reloadAs reloads the file as reload does, recording who changed it; an error means the
// running configuration is unchanged.
func (a *App) reloadAs(who string) error {
	a.reloading.Lock()
	defer a.reloading.Unlock()
	next, err := config.Load(a.ConfigPath)
	if err == nil {
		err = a.Owner.SetConfig(next)
	}
	if err != nil {
		a.Log.Error("reload refused, the running configuration is unchanged", "err", err)
		a.Alerts.Raise("config", "daemon", "the configuration was refused: "+err.Error())
		a.Bus.Publish(events.Event{Kind: "config.rejected", Severity: events.Warn, Source: "daemon", Message: err.Error()})
		return err
	}
	a.Alerts.Clear("config")
	for _, w := range next.Warnings {
		a.Log.Warn(w)
	}
	a.mu.Lock()
	prev := a.cfg
	a.cfg = next
	a.mu.Unlock()
	did := append(a.dropStaleFeeds(next), a.parts.reconcile(prev, next)...)
	a.auditConfig(who)
	msg := "configuration reloaded from " + a.ConfigPath
	if len(did) > 0 {
		msg += ": " + strings.Join(did, "; ")
	}
	a.Log.Info("configuration reloaded", "parts", strings.Join(did, "; "))
	a.Bus.Publish(events.Event{Kind: "config.changed", Source: "daemon", Message: msg})
	return nil
}

// dropStaleFeeds removes from the blocklist the community lists the config no longer has
// (the owner keeps a feed's last good list across restarts, for feeds that are still there).
func (a *App) dropStaleFeeds(cfg *config.Config) []string {
	keep := map[string]bool{}
	if cfg.SIPGuard.Enabled {
		for _, f := range cfg.SIPGuard.Feeds {
			keep[f.Name] = true
		}
	}
	var did []string
	for _, f := range a.Owner.State().Feeds {
		if keep[f.Name] {
			continue
		}
		if err := a.Owner.DropFeed(f.Name); err != nil {
			a.Log.Error("drop community list", "feed", f.Name, "err", err)
			continue
		}
		did = append(did, fmt.Sprintf("community list %s dropped (%d entries)", f.Name, f.Entries))
	}
	return did
}

// detectKernel probes the kernel once: each missing feature is one warning line and one
// event saying what is lost, instead of a failure later on.
func detectKernel(a *App) []kernelfeat.Feature {
	fs := kernelfeat.Detect()
	missing := kernelfeat.Missing(fs)
	for _, f := range missing {
		a.Log.Warn(f.Consequence, "feature", f.Name, "probe", f.Detail)
		a.Bus.Publish(events.Event{Kind: "kernel.missing", Severity: events.Warn, Source: "kernel",
			Message: f.Consequence, Fields: map[string]string{"feature": f.Name}})
	}
	a.Log.Info("kernel features probed", "present", len(fs)-len(missing), "missing", len(missing))
	return fs
}

// supervisorEvent tells people about a part that failed or panicked.
func (a *App) supervisorEvent(e suture.Event) {
	switch e := e.(type) {
	case suture.EventServicePanic:
		a.partFailed(e.ServiceName, fmt.Errorf("panic: %s", e.PanicMsg))
		a.Log.Error("part panicked", "part", e.ServiceName, "stack", e.Stacktrace)
	case suture.EventBackoff:
		a.Log.Warn("part failing repeatedly: restarts slowed down", "part", e.SupervisorName)
	case suture.EventStopTimeout:
		a.Log.Error("part did not stop in time", "part", e.ServiceName)
	}
}

// partFailed logs, alerts (the page, the LED and email) and records a part's failure.
func (a *App) partFailed(name string, err error) {
	msg := fmt.Sprintf("%s failed and is restarted: %v", name, err)
	a.Log.Error("part failed; restarting it", "part", name, "err", err)
	a.Alerts.Raise("part."+name, name, msg)
	a.Bus.Publish(events.Event{Kind: "part.failed", Severity: events.Alert, Source: "daemon", Message: msg,
		Fields: map[string]string{"part": name}})
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
