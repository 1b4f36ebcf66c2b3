// Package wan watches both uplinks and moves the office's traffic to the one that works.
package wan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
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

// Options are what the wan part learns from the daemon rather than from the configuration.
type Options struct {
	// StateDir keeps the DHCP leases across restarts ("" keeps nothing).
	StateDir string
	// PolicyRouting says the kernel has ip rules and routing tables (kernelfeat "policy
	// routing"): replies then leave through the uplink their connection came in on.
	PolicyRouting bool
}

// Service is the running wan part: probes, carrier events, decisions and switches.
type Service struct {
	log  *slog.Logger
	bus  *events.Bus
	opts Options

	mu       sync.Mutex // guards everything below; the loop holds it while it works
	cfg      config.WAN
	site     *Site
	ups      map[Role]*uplink
	trunks   []*trunk
	history  []events.Event
	replyErr string        // the last reply-routing trouble said
	reg      *Registration // the PBX's last REGISTER seen leaving

	results  chan probeResult
	confirms chan confirmResult
	leases   chan lease
	forceCh  chan Mode
	cfgCh    chan *config.Config
	stopped  chan struct{} // closed when Run returns: nothing takes a Force any more
	watch    watchers      // told of every change Status shows (watch.go)
}

type uplink struct {
	index   int // in the configuration's Uplink.All(): its reply-routing mark and table
	role    Role
	cfg     *config.Uplink
	health  *Health
	prober  *prober
	targets []config.WANTarget
	addr    netip.Addr // IPv4 source of its probes and of its masqueraded flows
	gw      gateway
	dns     []netip.Addr // learned by DHCP (option 6)
	carrier bool
	ifindex int       // of the link as last seen: a new one means the link was made again
	dhcp    *dhcpLine // nil for a static uplink
	fast    bool
	kicks   []chan struct{}
	// A confirmation burst is out since confirmStart; suspicions counts the silences that a
	// burst found to be a working line after all.
	confirming   bool
	confirmStart time.Time
	suspicions   int
}

type trunk struct {
	st       TrunkStatus
	to       netip.AddrPort
	reported State
}

// confirmResult is the outcome of a confirmation burst on a silent line.
type confirmResult struct {
	role    Role
	ok      bool // some probe of the burst was answered
	target  int  // the one that answered
	sent    int
	started time.Time
	at      time.Time
	// The daemon itself was held up well past the burst's timeout (a busy box): its probes'
	// answers may have come and gone unheard, so the burst proves nothing.
	stalled time.Duration
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
func New(cfg *config.Config, bus *events.Bus, log *slog.Logger, opts Options) *Service {
	if cfg.Uplink.Primary == nil {
		return nil
	}
	s := &Service{
		log: log, bus: bus, opts: opts, cfg: cfg.WAN, ups: map[Role]*uplink{},
		results: make(chan probeResult, 256), confirms: make(chan confirmResult, 4), leases: make(chan lease, 4),
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
		u := &uplink{index: i, role: Role(uc.Role), cfg: uc, health: NewHealth(ThresholdsFrom(cfg.WAN), names, now),
			prober: newProber(uc.Interface, i), targets: targets, carrier: true}
		if uc.Mode == "static" {
			u.addr = uc.Address.Addr()
			u.gw = gateway{dev: uc.Interface, gw4: uc.Gateway.Addr, gw6: uc.Gateway6.Addr}
		} else {
			u.gw = gateway{dev: uc.Interface}
			u.dhcp = &dhcpLine{role: u.role, dev: uc.Interface, metric: netcfg.MetricPrimary, kick: make(chan struct{}, 1), log: log}
			if u.role == Backup {
				u.dhcp.metric = netcfg.MetricBackup
			}
			if opts.StateDir != "" {
				u.dhcp.file = filepath.Join(opts.StateDir, "wan-lease-"+uc.Interface+".json")
			}
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
		if s.opts.PolicyRouting {
			if err := removeReplyRoutes(len(s.ups)); err != nil {
				s.log.Warn("wan: stop", "err", err)
			}
		}
	}()

	links := make(chan netlink.LinkUpdate, 64)
	wg.Add(1)
	go func() { defer wg.Done(); s.watchLinks(ctx, links) }()

	s.mu.Lock()
	for _, u := range s.ups {
		if u.dhcp != nil {
			wg.Add(1)
			go func(u *uplink) { defer wg.Done(); u.dhcp.run(ctx, s.leases) }(u)
		}
		for i := range u.targets {
			wg.Add(1)
			go func(u *uplink, i int) { defer wg.Done(); s.probeLoop(ctx, u, i) }(u, i)
		}
		wg.Add(1)
		go func(u *uplink) { defer wg.Done(); s.watchRegisters(ctx, u) }(u)
	}
	if err := setActiveRoute(s.ups[Primary].gw); err != nil && s.ups[Primary].gw.gw4.IsValid() {
		s.log.Warn("wan: initial route", "err", err)
	}
	if !s.opts.PolicyRouting {
		s.log.Warn("wan: the kernel has no policy routing: connections that come in on the standby uplink are answered out of the active one (ISPs that filter spoofed sources drop those replies)")
	}
	s.reconcileReplyRoutes()
	s.updateRates()
	s.mu.Unlock()
	wg.Add(1)
	go func() { defer wg.Done(); s.trunkLoop(ctx) }()
	s.log.Info("wan: watching uplinks", "targets", fmt.Sprint(s.cfg.Targets))

	// Fine-grained, for the silence rule; the state machine itself runs every 250 ms.
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	lastReconcile, lastDecide := time.Time{}, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-s.results:
			s.mu.Lock()
			s.result(ctx, r)
			s.mu.Unlock()
		case c := <-s.confirms:
			s.mu.Lock()
			s.drainResults(ctx)
			s.confirmed(ctx, c)
			s.mu.Unlock()
		case lu := <-links:
			s.mu.Lock()
			now := time.Now()
			for _, u := range s.ups {
				if u.cfg.Interface != lu.Attrs().Name {
					continue
				}
				deleted := lu.Header.Type == unix.RTM_DELLINK
				up := !deleted && lu.Attrs().RawFlags&unix.IFF_UP != 0 && lu.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
				remade := !deleted && u.ifindex != 0 && lu.Attrs().Index != u.ifindex
				if remade {
					// The raw ICMP socket is bound to the old link: open a new one.
					u.prober.close()
				}
				if !deleted {
					u.ifindex = lu.Attrs().Index
				}
				// A modem that re-enumerates (its link made again) or whose carrier comes back
				// may be on another network: ask for a lease now, not at the next renewal.
				if u.dhcp != nil && (deleted || remade || (up && !u.carrier)) {
					select {
					case u.dhcp.kick <- struct{}{}:
					default:
					}
				}
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
				u.addr, u.gw.gw4, u.dns = l.addr.Addr(), l.gw, l.dns
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
				s.reconcileReplyRoutes()
				s.changed() // a lease may bring new resolvers without a new address
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
			s.changed()
			s.mu.Unlock()
		case now := <-tick.C:
			s.mu.Lock()
			s.drainResults(ctx)
			s.checkSilence(ctx, now)
			if now.Sub(lastDecide) >= 250*time.Millisecond {
				lastDecide = now
				s.decide(ctx, now)
			}
			// Something else (an interface bounce, a reload) may have removed the route.
			if now.Sub(lastReconcile) >= 2*time.Second {
				lastReconcile = now
				if g := s.ups[s.site.Active].gw; g.gw4.IsValid() {
					if err := setActiveRoute(g); err != nil {
						s.log.Warn("wan: reconcile route", "err", err)
					}
				}
				s.reconcileReplyRoutes()
			}
			s.mu.Unlock()
		}
	}
}

// result records one regular probe's outcome.
func (s *Service) result(ctx context.Context, r probeResult) {
	if u := s.ups[r.role]; u != nil {
		if !r.ok {
			u.health.SetError(r.target, r.err)
		}
		if u.health.Result(r.target, r.ok, r.rtt, r.at) {
			s.uplinkChanged(u, r.at)
		}
	}
	s.decide(ctx, r.at)
}

// drainResults records the probe results already queued. Silence is judged on every answer
// received so far: after a stall of the loop (a busy box), answers waiting in the queue
// would otherwise read as a silent line.
func (s *Service) drainResults(ctx context.Context) {
	for range cap(s.results) {
		select {
		case r := <-s.results:
			s.result(ctx, r)
		default:
			return
		}
	}
}

// reconcileReplyRoutes keeps every uplink's reply-routing table and rules as they should be.
// A missing interface (a modem not plugged in yet) is retried at the next reconcile.
func (s *Service) reconcileReplyRoutes() {
	if !s.opts.PolicyRouting {
		return
	}
	var errs []error
	for _, r := range []Role{Primary, Backup} {
		if u := s.ups[r]; u != nil {
			errs = append(errs, setReplyRoutes(u.index, u.gw))
		}
	}
	// Said once per new trouble, not every reconcile.
	msg := fmt.Sprint(errors.Join(errs...))
	if msg != s.replyErr && msg != "<nil>" {
		s.log.Warn("wan: reconcile reply routes", "err", msg)
	}
	s.replyErr = msg
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
		if s.fastLine(u) && slices.Contains(u.health.Live(time.Now()), i) {
			every = s.cfg.FastInterval
		}
		u.health.Sent(i)
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

// fastLine says whether u gets the fast probes: the primary is a fixed line without a data
// cap, and while it carries the traffic its live targets are probed every fast_interval.
func (s *Service) fastLine(u *uplink) bool { return u.role == Primary && s.site.Active == Primary }

// updateRates probes the standby sparingly unless it or the active uplink is down, or the
// active one is under suspicion (a confirmation burst is out: the standby's verdict is
// refreshed at once). A degraded active line (a dead or rate-limiting target, some loss)
// keeps the traffic, so it does not spend the modem's data. The primary is always probed at
// full rate, so its recovery and stability are measured while the office runs on the modem.
func (s *Service) updateRates() {
	act := s.ups[s.site.Active]
	actState, _, _ := act.health.State()
	for _, u := range s.ups {
		own, _, _ := u.health.State()
		// A standby that is down is probed at full rate until it is back: a dead line carries
		// little to bill, and the office must know at once that its backup works again.
		fast := u.role == Primary || u.role == s.site.Active || !actState.usable() || act.confirming || !own.usable()
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

// checkSilence starts a confirmation burst on every fast-probed line that has gone silent.
func (s *Service) checkSilence(ctx context.Context, now time.Time) {
	for _, u := range s.ups {
		if !u.fast || u.confirming || !u.health.Silent(now, s.cfg.Silence) {
			continue
		}
		live := u.health.Live(now)
		stats := u.health.Stats()
		var rtt time.Duration
		for _, i := range live {
			rtt = max(rtt, stats[i].RTT)
		}
		// A few round trips of the line as it was, and at least confirmWait, within the timeout.
		timeout := min(max(4*rtt, confirmWait), s.cfg.Timeout)
		per := burstSize(u.health.LossRatio(now), len(live))
		u.confirming, u.confirmStart = true, now
		s.updateRates()
		targets := make([]config.WANTarget, len(live))
		for j, i := range live {
			targets[j] = u.targets[i]
		}
		go s.confirm(ctx, u, live, targets, per, timeout, u.addr, now)
	}
}

// stallSlack is how much later than its timeout a lost burst may end before the box, not the
// line, is taken to have been too busy to hear it.
const stallSlack = 200 * time.Millisecond

// confirmWait is the least a confirmation burst waits for an answer. The answers of the
// regular probes still in flight count too, so a line whose round trip suddenly grows by up
// to silence + confirmWait (bufferbloat, a slow resolver) is not taken for a dead one.
const confirmWait = 300 * time.Millisecond

// burstSize is the number of confirmation probes per live target: enough that a working line
// with the loss seen so far loses them all less than once in a million bursts (3 to 12 in
// all), at least two per target.
func burstSize(loss float64, live int) int {
	loss = min(max(loss, 0.02), 0.9)
	total := min(max(int(math.Ceil(math.Log(1e-6)/math.Log(loss))), 3), 12)
	return max(2, (total+live-1)/max(live, 1))
}

// confirm sends per probes to each live target, 10 ms apart, and reports whether any was
// answered within timeout (at the first answer).
func (s *Service) confirm(parent context.Context, u *uplink, idx []int, targets []config.WANTarget, per int, timeout time.Duration, src netip.Addr, started time.Time) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	answered := make(chan int, len(targets)*per)
	var wg sync.WaitGroup
send:
	for k := range per {
		for j, t := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := u.prober.probe(ctx, t, src, timeout); err == nil {
					answered <- idx[j]
				}
			}()
		}
		if k < per-1 {
			select {
			case <-ctx.Done():
				break send
			case i := <-answered:
				answered <- i
				break send
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	lastSent := time.Now()
	go func() { wg.Wait(); close(answered) }()
	r := confirmResult{role: u.role, target: -1, sent: per * len(targets), started: started}
	if i, ok := <-answered; ok {
		r.ok, r.target = true, i
	}
	r.at = time.Now()
	if late := r.at.Sub(lastSent) - timeout; !r.ok && late > stallSlack {
		r.stalled = late
	}
	cancel()
	select {
	case s.confirms <- r:
	case <-parent.Done():
	}
}

// confirmed acts on a confirmation burst: one answer keeps the line; none takes it down.
func (s *Service) confirmed(ctx context.Context, c confirmResult) {
	u := s.ups[c.role]
	if u == nil || !u.confirming {
		return
	}
	u.confirming = false
	if c.ok {
		u.health.Heard(c.target, c.at)
	}
	if c.stalled > 0 {
		// The silence rule asks again at the next tick if the line is still quiet; the slow
		// rule (every target lost down_after times in a row) still applies meanwhile.
		s.log.Warn("wan: confirmation burst not heard in time (the box was busy): asking again", "uplink", u.cfg.Name, "late", c.stalled.Round(time.Millisecond))
		s.updateRates()
		return
	}
	// A regular probe may have been answered while the burst was out.
	if c.ok || !u.health.Silent(c.at, s.cfg.Silence) {
		u.suspicions++
		s.log.Info("wan: silence was not a dead line", "uplink", u.cfg.Name, "burst", c.sent, "took", c.at.Sub(c.started).Round(time.Millisecond))
		s.updateRates()
		return
	}
	reason := fmt.Sprintf("silent: no answer from any live target for %s or more, and all %d confirmation probes lost",
		s.cfg.Silence, c.sent)
	if u.health.SilentDown(reason, c.at) {
		s.uplinkChanged(u, c.at)
	}
	s.updateRates()
	s.decide(ctx, c.at)
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
	if st == Down {
		f["flows_removed"] = strconv.Itoa(int(s.flushDeadLine(u)))
	}
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
	// The standby modem's state may rest on a probe from a minute ago: traffic moves to it
	// only after it has answered lately (it is probed at once when the primary fails), never
	// on faith to a line that died in the meantime. (The primary is always probed at full
	// rate: its state is fresh.)
	if u := s.ups[Backup]; u != nil && s.site.Active == Primary && b.usable() && now.Sub(u.health.LastAnswer()) > 2*s.cfg.Interval {
		b = Unknown
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
	// Every event is a change of state (the history records it; watchers read the state).
	s.changed()
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
				rtt, err := SIPOptions(ctx, dev, src, t.to, min(every, 2*time.Second))
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
		s.changed()
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
