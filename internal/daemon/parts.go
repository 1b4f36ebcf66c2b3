package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/kernelfeat"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// runner is a part's work: it runs until ctx ends (then returns nil); an error asks the
// supervisor for a restart.
type runner interface {
	Run(ctx context.Context) error
}

// reloader is a part that takes a new configuration in place.
type reloader interface {
	Reload(cfg *config.Config) error
}

// partSpec says how to make a part and which of its settings only a new start takes.
type partSpec struct {
	name string
	// make returns the part, or nil when the configuration switches it off.
	make func(*App) (runner, error)
	// startKey renders the settings the part reads only when it starts: a change restarts it.
	startKey func(*config.Config) string
}

// specs are the parts after the firewall owner, in the order they are made: each may read
// the ones before it on the App.
func specs() []partSpec {
	return []partSpec{
		{name: "notify", make: func(a *App) (runner, error) { return a.Mail, nil }},
		{name: "wan", make: func(a *App) (runner, error) {
			a.WAN = wan.New(a.Config(), a.Bus, a.Log, wan.Options{StateDir: a.StateDir, PolicyRouting: kernelfeat.Has(a.Kernel, "policy routing") && kernelfeat.Has(a.Kernel, "ct mark")})
			if a.WAN == nil {
				return nil, nil
			}
			return &wanPart{app: a, s: a.WAN}, nil
		}},
		relaySpec(),     // relay.go
		shaperSpec(),    // shaper.go
		callsSpec(),     // calls.go
		voiceMoveSpec(), // voicemove.go
		{name: "dns", make: func(a *App) (runner, error) { return orNil(newDNSPart(a)) }, startKey: dnsStartKey},
		{name: "clock", make: func(a *App) (runner, error) { return orNil(newClockPart(a)) }, startKey: clockStartKey},
		{name: "hal", make: func(a *App) (runner, error) {
			h, err := newHALPart(a)
			a.HAL.Store(h)
			return orNil(h, err)
		}, startKey: func(c *config.Config) string { return fmt.Sprint(c.HAL) }},
		{name: "sipguard", make: func(a *App) (runner, error) {
			g, err := newSIPGuardPart(a)
			a.mu.Lock()
			a.Guard = g
			a.mu.Unlock()
			return orNil(g, err)
		}, startKey: func(c *config.Config) string {
			ifs, ports := captureSetup(c)
			return fmt.Sprint(c.SIPGuard.Enabled, ifs, ports, c.SIPGuard.AbuseLookup, c.SIPGuard.BlockTimes)
		}},
		{name: "feeds", make: func(a *App) (runner, error) { return orNil(newFeedsPart(a)) },
			startKey: func(c *config.Config) string { return fmt.Sprint(c.SIPGuard.Enabled, c.SIPGuard.Feeds) }},
		{name: "peers", make: func(a *App) (runner, error) { return orNil(newPeersPart(a)) }},
		{name: "crowdsec", make: func(a *App) (runner, error) { return orNil(newCrowdSecPart(a)) }, startKey: crowdSecStartKey},
		{name: "backup", make: func(a *App) (runner, error) { return orNil(newBackupPart(a)) }, startKey: backupStartKey},
		dhcpSpec(),
		raSpec(),
		{name: "vpn", make: func(a *App) (runner, error) { return orNil(newVPNPart(a)) }, startKey: vpnStartKey},
		{name: "configedit", make: func(a *App) (runner, error) { return orNil(newEditPart(a)) }},
		{name: "history", make: func(a *App) (runner, error) {
			h, err := newHistoryPart(a)
			a.History = h
			return orNil(h, err)
		}},
		{name: "web", make: func(a *App) (runner, error) { return orNil(newWebPart(a)) }},
	}
}

// orNil turns a typed nil part into a nil runner (a part switched off).
func orNil[T runner](p T, err error) (runner, error) {
	if err != nil {
		return nil, err
	}
	var zero T
	if any(p) == any(zero) {
		return nil, nil
	}
	return p, nil
}

// parts runs each part under a supervisor of its own (one part's backoff never delays
// another's restart) and reconciles them on reload.
type parts struct {
	app  *App
	root *suture.Supervisor
	mu   sync.Mutex
	on   map[string]*partRun
}

type partRun struct {
	r     runner
	token suture.ServiceToken
}

func newParts(app *App, root *suture.Supervisor) *parts {
	return &parts{app: app, root: root, on: map[string]*partRun{}}
}

// startAll makes and starts every part, in order.
func (p *parts) startAll() {
	for _, s := range specs() {
		p.start(s.name, s.make)
	}
}

// start makes a part and puts it under its supervisor; a part that cannot be made is an
// alert, and stays off until the next reload.
func (p *parts) start(name string, mk func(*App) (runner, error)) {
	r, err := mk(p.app)
	if err != nil {
		p.app.partFailed(name, err)
		return
	}
	if r == nil {
		return
	}
	sup := suture.New(name, suture.Spec{EventHook: p.app.supervisorEvent, FailureThreshold: 5,
		FailureDecay: 30, FailureBackoff: 15 * time.Second, Timeout: 10 * time.Second})
	sup.Add(&supervised{name: name, r: r, app: p.app})
	p.mu.Lock()
	p.on[name] = &partRun{r: r, token: p.root.Add(sup)}
	p.mu.Unlock()
}

// stop ends a part and waits for it.
func (p *parts) stop(name string) {
	p.mu.Lock()
	pr := p.on[name]
	delete(p.on, name)
	p.mu.Unlock()
	if pr == nil {
		return
	}
	if err := p.root.RemoveAndWait(pr.token, 15*time.Second); err != nil {
		p.app.Log.Error("part did not stop", "part", name, "err", err)
	}
	p.app.Alerts.Clear("part." + name)
}

// reconcile brings the parts to next: a part whose start settings changed is restarted (or
// started, or stopped, when it is switched on or off), the others reload in place. It says
// what it did, and which settings take a restart of the appliance.
func (p *parts) reconcile(prev, next *config.Config) []string {
	var did []string
	for _, s := range specs() {
		p.mu.Lock()
		pr := p.on[s.name]
		p.mu.Unlock()
		if s.startKey != nil && s.startKey(prev) != s.startKey(next) {
			p.stop(s.name)
			p.start(s.name, s.make)
			p.mu.Lock()
			now := p.on[s.name] != nil
			p.mu.Unlock()
			switch {
			case pr == nil && now:
				did = append(did, s.name+" started")
			case pr != nil && !now:
				did = append(did, s.name+" stopped")
			case now:
				did = append(did, s.name+" restarted (its settings changed)")
			}
			continue
		}
		if rl, ok := pr.runner().(reloader); ok {
			if err := rl.Reload(next); err != nil {
				p.app.Log.Error("reload", "part", s.name, "err", err)
				did = append(did, fmt.Sprintf("%s did not take the new settings: %v", s.name, err))
			}
		}
	}
	if r := restartNeeded(prev, next); len(r) > 0 {
		did = append(did, "takes effect after a restart of the appliance: "+strings.Join(r, ", "))
	}
	return did
}

func (pr *partRun) runner() runner {
	if pr == nil {
		return nil
	}
	return pr.r
}

// restartNeeded lists the changed settings no reload takes: wan's uplinks and probe targets
// (restarting wan alone would hand the default route back and cut the office off), and the
// site name in sipguard's abuse reports.
func restartNeeded(prev, next *config.Config) []string {
	var out []string
	if !slices.Equal(prev.WAN.Targets, next.WAN.Targets) {
		out = append(out, "wan.targets")
	}
	if uplinks(prev) != uplinks(next) {
		out = append(out, "uplink (the failover part's uplinks)")
	}
	if prev.Site != next.Site && next.SIPGuard.Enabled {
		// Not worth restarting sipguard (it would forget every source's counters) for a name.
		out = append(out, "site in sipguard's abuse reports")
	}
	return out
}

// wanPart is the failover part, and it tells the owner which gateways and DNS resolvers the
// uplinks have now (a DHCP lease's are as vital as configured ones: never to be blocked).
type wanPart struct {
	app *App
	s   *wan.Service
}

func (p *wanPart) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go p.protectGateways(ctx)
	return p.s.Run(ctx)
}

func (p *wanPart) Reload(cfg *config.Config) error { return p.s.Reload(cfg) }

// protectGateways follows wan's state (its watch) and retries every 2 s while the owner
// refuses the update.
func (p *wanPart) protectGateways(ctx context.Context) {
	changed, stop := p.s.Watch()
	defer stop()
	retry := time.NewTicker(2 * time.Second)
	defer retry.Stop()
	var last []netcfg.Protection
	synced := false
	for {
		var now []netcfg.Protection
		for _, u := range p.s.Status().Uplinks {
			if a, err := netip.ParseAddr(u.Gateway); err == nil {
				now = append(now, netcfg.Protection{Prefix: netip.PrefixFrom(a, a.BitLen()), Why: "the gateway of uplink " + u.Name + " (as it has it now)"})
			}
			now = append(now, netcfg.LearnedResolvers(u.Name, u.DNS)...)
		}
		synced = synced && slices.Equal(now, last)
		if !synced {
			if err := p.app.Owner.SetProtected("wan", now); err == nil {
				last, synced = now, true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-retry.C:
			if synced {
				continue
			}
		}
	}
}

// supervised is a part as suture runs it: its failures are alerts, and a part that has run a
// minute since is well again.
type supervised struct {
	name string
	r    runner
	app  *App
}

func (s *supervised) Serve(ctx context.Context) error {
	well := time.AfterFunc(time.Minute, func() { s.app.Alerts.Clear("part." + s.name) })
	defer well.Stop()
	err := s.r.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("it stopped by itself")
	}
	s.app.partFailed(s.name, err)
	return err
}

func (s *supervised) String() string { return s.name }

func uplinks(c *config.Config) string {
	var b strings.Builder
	for _, u := range c.Uplink.All() {
		x := *u
		x.DataBudget, x.BillingDay = 0, 0 // counted by the history part, which reads them at each sample
		fmt.Fprintf(&b, "%+v;", x)
	}
	return b.String()
}
