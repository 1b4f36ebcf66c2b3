// Package wan watches both uplinks and moves the office's traffic to the one that works.
package wan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
)

// Service is the running wan part: probes, carrier events, decisions and switches.
type Service struct {
	log *slog.Logger
	bus *events.Bus

	mu      sync.Mutex // guards everything below; the loop holds it while it works
	cfg     config.WAN
	site    *Site
	ups     map[Role]*uplink
	trunks  []*trunk
	history []events.Event

	results chan probeResult
	leases  chan lease
	forceCh chan Mode
	cfgCh   chan *config.Config
	stopped chan struct{} // closed when Run returns: nothing takes a Force any more
}

type uplink struct {
	role    Role
	cfg     *config.Uplink
	health  *Health
	prober  *prober
	targets []config.WANTarget
	addr    netip.Addr // IPv4 source of its probes and of its masqueraded flows
	gw      gateway
	carrier bool
	fast    bool
	kicks   []chan struct{}
}

type trunk struct {
	st       TrunkStatus
	to       netip.AddrPort
	reported State
}

type probeResult struct {
	role   Role
	target int
	ok     bool
	rtt    time.Duration
	at     time.Time
	err    string
}

// New makes the wan part for cfg; it returns nil when there is no uplink to watch.
func New(cfg *config.Config, bus *events.Bus, log *slog.Logger) *Service {
	if cfg.Uplink.Primary == nil {
		return nil
	}
	s := &Service{
		log: log, bus: bus, cfg: cfg.WAN, ups: map[Role]*uplink{},
		results: make(chan probeResult, 256), leases: make(chan lease, 4),
		forceCh: make(chan Mode), cfgCh: make(chan *config.Config, 1), stopped: make(chan struct{}),
	}
	s.site = NewSite(cfg.WAN.Stability, cfg.WAN.HoldDownMax, cfg.Uplink.Backup != nil)
	now := time.Now()
	targets := cfg.WAN.ProbeTargets()
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.String()
	}
	for i, uc := range cfg.Uplink.All() {
		u := &uplink{role: Role(uc.Role), cfg: uc, health: NewHealth(ThresholdsFrom(cfg.WAN), names, now),
			prober: newProber(uc.Interface, i), targets: targets, carrier: true}
		if uc.Mode == "static" {
			u.addr = uc.Address.Addr()
			u.gw = gateway{dev: uc.Interface, gw4: uc.Gateway.Addr, gw6: uc.Gateway6.Addr}
		} else {
			u.gw = gateway{dev: uc.Interface}
		}
		for range targets {
			u.kicks = append(u.kicks, make(chan struct{}, 1))
		}
		s.ups[u.role] = u
	}
	s.setTrunks(cfg)
	return s
}

func (s *Service) setTrunks(cfg *config.Config) {
	old := map[string]*trunk{}
	for _, t := range s.trunks {
		old[t.st.Name] = t
	}
	s.trunks = nil
	for _, n := range config.SortedNames(cfg.SIPPeers) {
		to, ok := cfg.SIPPeers[n].OptionsAddr()
		if !ok {
			continue
		}
		if t := old[n]; t != nil && t.to == to {
			s.trunks = append(s.trunks, t)
			continue
		}
		s.trunks = append(s.trunks, &trunk{to: to, reported: Unknown,
			st: TrunkStatus{Name: n, Target: to.String(), State: Unknown, Since: time.Now()}})
	}
}

// Reload takes new [wan] settings and trunks; new probe targets and uplink changes need a
// restart.
func (s *Service) Reload(cfg *config.Config) error {
	select {
	case s.cfgCh <- cfg:
	default:
		<-s.cfgCh
		s.cfgCh <- cfg
	}
	return nil
}

// Force sets the manual override.
func (s *Service) Force(ctx context.Context, m Mode) error {
	select {
	case s.forceCh <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopped:
		// The button's in-process request has no deadline: it must not hang a stopping daemon.
		return errors.New("wan: stopped")
	}
}

// Run works until ctx ends; then it hands the routing back to the uplinks' own metrics.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		close(s.stopped)
		cancel()
		wg.Wait()
		for _, u := range s.ups {
			u.prober.close()
		}
		if err := removeActiveRoutes(); err != nil {
			s.log.Warn("wan: stop", "err", err)
		}
	}()

	links := make(chan netlink.LinkUpdate, 64)
	wg.Add(1)
	go func() { defer wg.Done(); s.watchLinks(ctx, links) }()

	s.mu.Lock()
	for _, u := range s.ups {
		if u.cfg.Mode == "dhcp" {
			metric := netcfg.MetricPrimary
			if u.role == Backup {
				metric = netcfg.MetricBackup
			}
			wg.Add(1)
			go func(u *uplink) {
				defer wg.Done()
				runDHCP(ctx, s.log, u.role, u.cfg.Interface, metric, s.leases)
			}(u)
		}
		for i := range u.targets {
			wg.Add(1)
			go func(u *uplink, i int) { defer wg.Done(); s.probeLoop(ctx, u, i) }(u, i)
		}
	}
	if err := setActiveRoute(s.ups[Primary].gw); err != nil && s.ups[Primary].gw.gw4.IsValid() {
		s.log.Warn("wan: initial route", "err", err)
	}
	s.updateRates()
	s.mu.Unlock()
	wg.Add(1)
	go func() { defer wg.Done(); s.trunkLoop(ctx) }()
	s.log.Info("wan: watching uplinks", "targets", fmt.Sprint(s.cfg.Targets))

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastReconcile := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-s.results:
			s.mu.Lock()
			if u := s.ups[r.role]; u != nil {
				if !r.ok {
					u.health.SetError(r.target, r.err)
				}
				if u.health.Result(r.target, r.ok, r.rtt, r.at) {
					s.uplinkChanged(u, r.at)
				}
			}
			s.decide(ctx, r.at)
			s.mu.Unlock()
		case lu := <-links:
			s.mu.Lock()
			now := time.Now()
			for _, u := range s.ups {
				if u.cfg.Interface != lu.Attrs().Name {
					continue
				}
				up := lu.Header.Type != unix.RTM_DELLINK && lu.Attrs().RawFlags&unix.IFF_UP != 0 && lu.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
				if up != u.carrier {
					u.carrier = up
					if u.health.Carrier(up, now) {
						s.uplinkChanged(u, now)
					}
				}
			}
			s.decide(ctx, now)
			s.mu.Unlock()
		case l := <-s.leases:
			s.mu.Lock()
			if u := s.ups[l.role]; u != nil {
				old := u.addr
				u.addr, u.gw.gw4 = l.addr.Addr(), l.gw
				u.prober.close() // its raw socket is bound to the old address
				if old.IsValid() && old != u.addr {
					// Flows masqueraded to an address the line no longer has are dead.
					if n, err := flushFlows(old); err != nil {
						s.log.Warn("wan: address change", "err", err)
					} else {
						s.publish(events.Event{Kind: "uplink.address", Message: fmt.Sprintf("%s: address %s replaced by %s; %d flows of the old one removed", u.cfg.Name, old, l.addr, n),
							Fields: map[string]string{"uplink": string(u.role), "old": old.String(), "new": l.addr.String()}})
					}
				}
				if s.site.Active == u.role && u.gw.gw4.IsValid() {
					if err := setActiveRoute(u.gw); err != nil {
						s.log.Warn("wan: route after lease", "err", err)
					}
				}
			}
			s.mu.Unlock()
		case m := <-s.forceCh:
			s.mu.Lock()
			if m != s.site.Mode {
				s.site.SetMode(m)
				e := events.Event{Kind: "wan.override", Severity: events.Warn, Message: "manual override: traffic pinned to the " + string(m) + " uplink while it works",
					Fields: map[string]string{"mode": string(m), "active": string(s.site.Active)}}
				if m == Auto {
					e.Severity, e.Message = events.Info, "manual override off: the uplink is chosen by health again"
				}
				s.publish(e)
				s.updateRates()
			}
			s.decide(ctx, time.Now())
			s.mu.Unlock()
		case c := <-s.cfgCh:
			s.mu.Lock()
			if fmt.Sprint(c.WAN.Targets) != fmt.Sprint(s.cfg.Targets) {
				s.log.Warn("wan: new probe targets take effect at the next restart")
			}
			targets := s.cfg.Targets
			s.cfg = c.WAN
			s.cfg.Targets = targets
			for _, u := range s.ups {
				u.health.th = ThresholdsFrom(c.WAN)
			}
			s.site.stability, s.site.holdMax = c.WAN.Stability, c.WAN.HoldDownMax
			s.site.HoldDown = max(min(s.site.HoldDown, c.WAN.HoldDownMax), c.WAN.Stability)
			s.setTrunks(c)
			s.mu.Unlock()
		case now := <-tick.C:
			s.mu.Lock()
			s.decide(ctx, now)
			// Something else (an interface bounce, a reload) may have removed the route.
			if now.Sub(lastReconcile) >= 2*time.Second {
				lastReconcile = now
				if g := s.ups[s.site.Active].gw; g.gw4.IsValid() {
					if err := setActiveRoute(g); err != nil {
						s.log.Warn("wan: reconcile route", "err", err)
					}
				}
			}
			s.mu.Unlock()
		}
	}
}

// watchLinks streams carrier changes, resubscribing if netlink drops the subscription.
func (s *Service) watchLinks(ctx context.Context, out chan<- netlink.LinkUpdate) {
	for ctx.Err() == nil {
		ch := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{ListExisting: true,
			ErrorCallback: func(err error) { s.log.Warn("wan: link events", "err", err) }})
		if err != nil {
			s.log.Warn("wan: link events", "err", err)
			sleep(ctx, time.Second)
			continue
		}
	recv:
		for {
			select {
			case <-ctx.Done():
				close(done)
				return
			case u, ok := <-ch:
				if !ok {
					break recv
				}
				select {
				case out <- u:
				case <-ctx.Done():
					close(done)
					return
				}
			}
		}
		close(done)
		sleep(ctx, time.Second)
	}
}

// probeLoop probes one target through one uplink at the uplink's current rate.
func (s *Service) probeLoop(ctx context.Context, u *uplink, i int) {
	s.mu.Lock()
	interval := s.cfg.Interval
	n := len(u.targets)
	s.mu.Unlock()
	// Spread the targets over the interval so that a line is sampled evenly.
	sleep(ctx, interval*time.Duration(i)/time.Duration(max(n, 1)))
	for ctx.Err() == nil {
		s.mu.Lock()
		t, src, timeout := u.targets[i], u.addr, s.cfg.Timeout
		every := s.cfg.StandbyInterval
		if u.fast {
			every = s.cfg.Interval
		}
		s.mu.Unlock()
		go func() {
			rtt, err := u.prober.probe(ctx, t, src, timeout)
			r := probeResult{role: u.role, target: i, ok: err == nil, rtt: rtt, at: time.Now()}
			if err != nil {
				r.err = err.Error()
			}
			select {
			case s.results <- r:
			case <-ctx.Done():
			}
		}()
		timer := time.NewTimer(every)
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-u.kicks[i]:
		}
		timer.Stop()
	}
}

// updateRates probes the standby sparingly unless the active uplink looks unhealthy. The
// primary is a fixed line without a data cap: it is always probed at full rate, so its
// recovery and stability are measured while the office runs on the modem.
func (s *Service) updateRates() {
	act := s.ups[s.site.Active]
	actState, _, _ := act.health.State()
	for _, u := range s.ups {
		fast := u.role == Primary || u.role == s.site.Active || actState != Up
		if fast && !u.fast {
			for _, k := range u.kicks {
				select {
				case k <- struct{}{}:
				default:
				}
			}
		}
		u.fast = fast
	}
}

func (s *Service) uplinkChanged(u *uplink, now time.Time) {
	st, _, reason := u.health.State()
	sev := events.Info
	switch st {
	case Degraded:
		sev = events.Warn
	case Down:
		sev = events.Alert
	}
	f := map[string]string{"uplink": string(u.role), "name": u.cfg.Name, "interface": u.cfg.Interface,
		"state": string(st), "reason": reason, "carrier": strconv.FormatBool(u.carrier)}
	for _, ts := range u.health.Stats() {
		f["loss:"+ts.Target] = fmt.Sprintf("%d%% (%d/%d)", ts.LossPct, ts.Lost, ts.Sent)
		f["rtt:"+ts.Target] = ts.RTT.Round(time.Microsecond).String()
	}
	s.publish(events.Event{Time: now, Kind: "uplink." + string(st), Severity: sev,
		Message: fmt.Sprintf("uplink %s (%s) is %s: %s", u.cfg.Name, u.cfg.Interface, st, reason), Fields: f})
	s.updateRates()
}

// decide runs the site state machine and applies its decision.
func (s *Service) decide(ctx context.Context, now time.Time) {
	p, _, _ := s.ups[Primary].health.State()
	b := Down
	if u := s.ups[Backup]; u != nil {
		b, _, _ = u.health.State()
	}
	wasBoth := s.site.BothDown
	d := s.site.Decide(p, b, now)
	if s.site.BothDown != wasBoth {
		if s.site.BothDown {
			s.publish(events.Event{Time: now, Kind: "wan.both_down", Severity: events.Alert,
				Message: "both uplinks are down: the office is offline; still probing both", Fields: map[string]string{"active": string(s.site.Active)}})
		} else {
			s.publish(events.Event{Time: now, Kind: "wan.online", Message: "an uplink is back after both were down"})
		}
		s.updateRates()
	}
	if d == nil {
		return
	}
	from, to := s.ups[s.site.Active], s.ups[d.To]
	if to == nil || !to.gw.gw4.IsValid() {
		return
	}
	if err := setActiveRoute(to.gw); err != nil {
		s.log.Error("wan: switch", "err", err)
		return
	}
	n, err := flushFlows(from.addr)
	if err != nil {
		// Without conntrack netlink the flows move when their entries time out.
		s.log.Warn("wan: switch", "err", err)
	}
	// A packet routed before the switch may confirm its entry after the dump: sweep again.
	old := from.addr
	time.AfterFunc(300*time.Millisecond, func() {
		if ctx.Err() == nil {
			_, _ = flushFlows(old)
		}
	})
	prevHold := s.site.HoldDown
	s.site.Switched(d, now)
	sev := events.Warn
	if d.Kind == "failback" {
		sev = events.Info
	}
	f := map[string]string{"from": string(from.role), "to": string(to.role), "reason": d.Reason,
		"flows_removed": strconv.Itoa(int(n)), "hold_down": s.site.HoldDown.String(), "flaps": strconv.Itoa(s.site.Flaps),
		"mode": string(s.site.Mode)}
	if s.site.HoldDown != prevHold {
		f["hold_down_was"] = prevHold.String()
	}
	s.publish(events.Event{Time: now, Kind: "wan." + d.Kind, Severity: sev,
		Message: fmt.Sprintf("%s: traffic moved from %s to %s (%s); %d flows of %s removed", d.Kind, from.cfg.Name, to.cfg.Name, d.Reason, n, from.addr),
		Fields:  f})
	s.updateRates()
}

func (s *Service) publish(e events.Event) {
	e.Source = "wan"
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Severity == "" {
		e.Severity = events.Info
	}
	s.history = append(s.history, e)
	if len(s.history) > 100 {
		s.history = s.history[len(s.history)-100:]
	}
	args := []any{"kind", e.Kind, "msg", e.Message}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k, e.Fields[k])
	}
	s.log.Info("wan event", args...)
	if s.bus != nil {
		s.bus.Publish(e)
	}
}

// trunkLoop sends SIP OPTIONS to each trunk through the active uplink.
func (s *Service) trunkLoop(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		every := s.cfg.SIPInterval
		trunks := append([]*trunk(nil), s.trunks...)
		act := s.ups[s.site.Active]
		dev, src, role := act.cfg.Interface, act.addr, act.role
		s.mu.Unlock()
		var wg sync.WaitGroup
		for _, t := range trunks {
			wg.Add(1)
			go func(t *trunk) {
				defer wg.Done()
				rtt, err := sipOptions(ctx, dev, src, t.to, min(every, 2*time.Second))
				if ctx.Err() != nil {
					return
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				s.trunkResult(t, role, err == nil, rtt)
			}(t)
		}
		wg.Wait()
		sleep(ctx, every)
	}
}

func (s *Service) trunkResult(t *trunk, via Role, ok bool, rtt time.Duration) {
	now := time.Now()
	t.st.Via = string(via)
	if ok {
		t.st.ConsecLost, t.st.RTT = 0, rtt
	} else {
		t.st.ConsecLost++
	}
	next := t.st.State
	switch {
	case ok:
		next = Up
	case t.st.ConsecLost >= s.cfg.SIPDownAfter:
		next = Down
	}
	if next != t.st.State {
		t.st.State, t.st.Since = next, now
	}
	// Say "trunk down" only while the uplink works: a dead uplink is its own alarm.
	actState, _, _ := s.ups[via].health.State()
	if t.st.State == t.reported || (t.st.State == Down && !actState.usable()) {
		return
	}
	f := map[string]string{"trunk": t.st.Name, "target": t.st.Target, "via": string(via),
		"lost_in_a_row": strconv.Itoa(t.st.ConsecLost), "rtt": t.st.RTT.Round(time.Microsecond).String()}
	switch t.st.State {
	case Down:
		s.publish(events.Event{Time: now, Kind: "trunk.down", Severity: events.Alert, Fields: f,
			Message: fmt.Sprintf("SIP trunk %s (%s) stopped answering OPTIONS while uplink %s is %s", t.st.Name, t.st.Target, via, actState)})
	case Up:
		if t.reported != Unknown {
			s.publish(events.Event{Time: now, Kind: "trunk.up", Fields: f,
				Message: fmt.Sprintf("SIP trunk %s (%s) answers again via %s", t.st.Name, t.st.Target, via)})
		}
	}
	t.reported = t.st.State
}
