// Package box runs the box's side of the voice relay: its WireGuard tunnel over the lines, the route that sends the office's voice into it, and the fallback to direct.
package box

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/relay/wire"
	"github.com/officeedge/appliance/internal/vpn"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// AlertKey is the alert raised while the relay answers on no line (voice goes direct).
const AlertKey = "relay"

// Owner is the firewall owner as the part uses it: the relay's address is protected, and
// blocks are shared with the relay.
type Owner interface {
	SetProtected(name string, ps []netcfg.Protection) error
	State() *netcfg.BlockState
	Watch() (<-chan struct{}, func())
	BlockAll(rs []netcfg.BlockRequest) []error
	Withdraw(p netip.Prefix, source string) error
}

// Options are what the part needs from the daemon.
type Options struct {
	Config   *config.Config
	StateDir string // the box's relay key lives in StateDir/relay/box.key
	Log      *slog.Logger
	WAN      *wan.Service // the line the tunnel follows (nil: the first line)
	Owner    Owner        // nil: no protection of the relay, no block sharing (tests)
	Alerts   *alerts.Store
	// Resolve looks the relay's name up (nil: the system's resolver, over the active line).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Part is the relay's box side: it runs until its context ends, then removes its interface,
// rule and routes (voice goes direct).
type Part struct {
	o     Options
	log   *slog.Logger
	key   wgtypes.Key
	relay wgtypes.Key
	cfg   atomic.Pointer[config.Config]
	ep    atomic.Value // netip.AddrPort: the relay's endpoint, resolved

	voiceLine atomic.Int64 // the voice-move override: the line index + 1, 0 for none
	lineWake  chan struct{}

	sweepUntil time.Time // the loop's: the voice flows are flushed again until then (checkRelay)

	mu      sync.Mutex
	bind    *wire.BoxBind
	dev     *device.Device
	using   string // UsingRelay or UsingDirect
	since   time.Time
	line    int // the line the tunnel leaves through now
	errText string
	dup     dupMeter
	share   Sharing
	// relayRestarts counts the relay's restarts the tunnel handshook again for.
	relayRestarts int
}

// Where the office's voice goes.
const (
	UsingRelay  = "relay"
	UsingDirect = "direct"
)

// New loads the box's relay key (making it the first time).
func New(o Options) (*Part, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c := o.Config
	if !c.Relay.Enabled() {
		return nil, errors.New("relay: [relay] has no endpoint")
	}
	rk, err := wgtypes.ParseKey(c.Relay.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("relay: public_key: %w", err)
	}
	k, err := vpn.LoadKey(filepath.Join(o.StateDir, "relay", "box.key"))
	if err != nil {
		return nil, fmt.Errorf("relay: the box's key: %w", err)
	}
	p := &Part{o: o, log: o.Log, key: k, relay: rk, using: UsingDirect, since: time.Now(), line: -1, lineWake: make(chan struct{}, 1)}
	p.cfg.Store(c)
	p.ep.Store(netip.AddrPort{})
	if o.Resolve == nil {
		p.o.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	return p, nil
}

// PublicKey is the box's public key, which the relay's [office.NAME] public_key names.
func (p *Part) PublicKey() wgtypes.Key { return p.key.PublicKey() }

// Reload takes duplicate and all_traffic in place; the other settings restart the part (the
// daemon's start key).
func (p *Part) Reload(c *config.Config) error {
	p.cfg.Store(c)
	p.mu.Lock()
	b := p.bind
	p.mu.Unlock()
	if b != nil {
		b.SetDuplicate(c.Relay.Duplicate)
	}
	p.wakeLine()
	return nil
}

// SetVoiceLine is the voice-move part's hook: the tunnel leaves through uplink i (the index
// in config's Uplink.All(), 0 primary) whatever wan's active line is, until it is called
// with -1, which gives the line back to wan (the tunnel follows the active uplink again).
// The next tunnel packet leaves through the new line; calls in the tunnel keep their
// conntrack entries (the tunnel's own endpoint moves, the inner flows do not change).
func (p *Part) SetVoiceLine(i int) {
	p.voiceLine.Store(int64(i + 1))
	p.wakeLine()
}

func (p *Part) wakeLine() {
	select {
	case p.lineWake <- struct{}{}:
	default:
	}
}

func (p *Part) config() *config.Config { return p.cfg.Load() }

func (p *Part) endpoint() netip.AddrPort { return p.ep.Load().(netip.AddrPort) }

// Run brings the tunnel up, follows the lines and the relay's answers until ctx ends, then
// takes everything down: voice goes direct.
func (p *Part) Run(ctx context.Context) error {
	c := p.config()
	p.ep.Store(netip.AddrPort{}) // a restart protects the relay's address again (down lifted it)
	if host, _ := c.Relay.EndpointHostPort(); isAddr(host) {
		p.setEndpoint(p.lookup(ctx)) // an address: at once
	}
	if err := p.up(); err != nil {
		return err
	}
	defer p.down()
	var wanCh <-chan struct{}
	if p.o.WAN != nil {
		ch, stop := p.o.WAN.Watch()
		defer stop()
		wanCh = ch
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // before down: nothing of the part runs after it
	wg.Add(1)
	go func() { defer wg.Done(); p.shareLoop(ctx) }()

	p.followLine()
	check := time.NewTicker(checkEvery(c.Relay.ProbeInterval))
	defer check.Stop()
	reconcile := time.NewTicker(reconcileEvery)
	defer reconcile.Stop()
	// A name is looked up off the loop (the DNS part may still be starting, a lookup may
	// take seconds), again every resolveEvery, and soon after a failure.
	resolve := time.NewTimer(0)
	defer resolve.Stop()
	resolved := make(chan lookupResult, 1)
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wanCh:
			p.followLine()
		case <-p.lineWake:
			p.followLine()
		case <-check.C:
			p.checkRelay(start)
		case <-reconcile.C:
			if err := p.reconcile(); err != nil {
				if errors.Is(err, errGone) {
					return err // the interface went away: the supervisor makes it again
				}
				p.log.Error("relay: reconcile", "err", err)
			}
		case <-resolve.C:
			wg.Add(1)
			go func() { defer wg.Done(); resolved <- p.lookup(ctx) }()
		case r := <-resolved:
			if r.err != nil {
				p.log.Warn("relay: endpoint lookup failed, the last address is kept", "endpoint", c.Relay.Endpoint, "err", r.err)
				resolve.Reset(resolveRetry)
				continue
			}
			p.setEndpoint(r)
			resolve.Reset(resolveEvery)
		}
	}
}

// How often the relay's answers are read (switching to direct and back waits on this), the
// kernel state is brought back, and a relay's name is looked up again.
const (
	reconcileEvery = 5 * time.Second
	resolveEvery   = 5 * time.Minute
	resolveRetry   = 5 * time.Second
)

// sweepFor is how long after a switch between relay and direct the voice flows are flushed
// again at every check.
const sweepFor = 3 * time.Second

func checkEvery(probe time.Duration) time.Duration {
	return min(max(probe/4, 50*time.Millisecond), 250*time.Millisecond)
}

type lookupResult struct {
	ap  netip.AddrPort
	err error
}

func isAddr(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// lookup resolves the endpoint's host (an address is itself), IPv4 first: both lines have it.
func (p *Part) lookup(ctx context.Context) lookupResult {
	c := p.config()
	host, port := c.Relay.EndpointHostPort()
	if a, err := netip.ParseAddr(host); err == nil {
		return lookupResult{ap: netip.AddrPortFrom(a.Unmap(), port)}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	as, err := p.o.Resolve(ctx, host)
	if err != nil {
		return lookupResult{err: fmt.Errorf("relay: look up %s: %w", host, err)}
	}
	var addr netip.Addr
	for _, a := range as {
		if a = a.Unmap(); !addr.IsValid() || (a.Is4() && !addr.Is4()) {
			addr = a
		}
	}
	if !addr.IsValid() {
		return lookupResult{err: fmt.Errorf("relay: %s has no address", host)}
	}
	return lookupResult{ap: netip.AddrPortFrom(addr, port)}
}

// setEndpoint takes the relay's (new) address: the tunnel and the probes go there, and the
// owner never blocks it nor the tunnel's network.
func (p *Part) setEndpoint(r lookupResult) {
	if r.err != nil || r.ap == p.endpoint() {
		return
	}
	c := p.config()
	p.ep.Store(r.ap)
	p.log.Info("relay: endpoint", "endpoint", c.Relay.Endpoint, "address", r.ap)
	if p.o.Owner != nil {
		a := r.ap.Addr()
		err := p.o.Owner.SetProtected("relay", []netcfg.Protection{
			{Prefix: netip.PrefixFrom(a, a.BitLen()), Why: "the voice relay " + c.Relay.Endpoint},
			{Prefix: c.Relay.Tunnel.Prefix, Why: "the voice relay's tunnel"},
		})
		if err != nil {
			p.log.Error("relay: protect the relay's address", "err", err)
		}
	}
	p.setPeerEndpoint()
}

// followLine moves the tunnel to the voice-move override's line, or else wan's active one.
func (p *Part) followLine() {
	c := p.config()
	ups := c.Uplink.All()
	i := int(p.voiceLine.Load()) - 1
	if i < 0 || i >= len(ups) {
		i = 0
		if p.o.WAN != nil {
			active := p.o.WAN.Status().Active
			for j, u := range ups {
				if u.Role == string(active) {
					i = j
				}
			}
		}
	}
	p.mu.Lock()
	b, moved := p.bind, p.line != i
	p.line = i
	p.mu.Unlock()
	if b == nil {
		return
	}
	b.SetLine(i)
	if moved {
		p.log.Info("relay: the tunnel moves", "line", ups[i].Name, "interface", ups[i].Interface)
		p.kick()
	}
}

// checkRelay sends voice into the tunnel while the relay answers on a line, and direct (as
// without a relay) while it answers on none.
func (p *Part) checkRelay(start time.Time) {
	p.mu.Lock()
	b := p.bind
	p.mu.Unlock()
	if b == nil {
		return
	}
	p.sampleDuplicate(b)
	c := p.config()
	want := UsingDirect
	if usable(b.Stats(), c.Relay.Duplicate) && p.endpoint().IsValid() {
		want = UsingRelay
	}
	p.mu.Lock()
	was := p.using
	p.mu.Unlock()
	if want == was {
		if time.Now().Before(p.sweepUntil) {
			// A voice packet routed the old way just before the switch can make its
			// conntrack entry after the flush, with the old path's NAT; left alone, every
			// later packet of the call keeps that source address on the new path. The
			// sweeps of the next seconds take it away (the next packet makes it anew).
			if _, err := flushStaleVoice(c, want == UsingRelay); err != nil {
				p.log.Error("relay: flush the voice flows", "err", err)
			}
		}
		// A relay that never answered since the start is alerted on after a grace (the
		// first probes' round trip).
		if want == UsingDirect && time.Since(start) > 3*c.Relay.ProbeInterval+2*time.Second {
			p.raise()
		}
		return
	}
	if err := p.setRoutes(want == UsingRelay); err != nil {
		// Tried again at every check: said when it changes, not four times a second.
		p.mu.Lock()
		same := p.errText == err.Error()
		p.mu.Unlock()
		if !same {
			p.log.Error("relay: voice routes", "err", err)
		}
		p.setErr(err)
		return
	}
	p.setErr(nil)
	n, err := flushVoice(c)
	if err != nil {
		p.log.Error("relay: flush the voice flows", "err", err)
	}
	p.sweepUntil = time.Now().Add(sweepFor)
	p.mu.Lock()
	p.using, p.since = want, time.Now()
	p.mu.Unlock()
	p.log.Info("relay: voice path", "using", want, "flows_flushed", n)
	if want == UsingRelay {
		if p.o.Alerts != nil {
			p.o.Alerts.Clear(AlertKey)
		}
		return
	}
	p.raise()
}

// usable says whether voice sent into the tunnel reaches the relay: the line carrying it
// answers, or with duplicate any line does (every packet goes over each). A standby line
// that answers is not enough without duplicate: nothing goes through it.
func usable(lines []wire.LineStats, duplicate bool) bool {
	for _, l := range lines {
		if l.Reachable && (l.Current || duplicate) {
			return true
		}
	}
	return false
}

func (p *Part) raise() {
	if p.o.Alerts == nil {
		return
	}
	for _, a := range p.o.Alerts.List() {
		if a.Key == AlertKey && a.Active {
			return // raised once per outage, not at every check
		}
	}
	c := p.config()
	p.o.Alerts.Raise(AlertKey, "relay", fmt.Sprintf("the voice relay %s answers on neither line: calls go direct, "+
		"from the lines' own addresses (trunks that allow only %s refuse them). Check the relay host and its firewall; "+
		"voice goes back through it as soon as it answers", c.Relay.Endpoint, c.Relay.PublicAddress))
}

func (p *Part) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errText = ""
	if err != nil {
		p.errText = err.Error()
	}
}

// Using says where the office's voice goes now (UsingRelay or UsingDirect).
func (p *Part) Using() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.using
}
