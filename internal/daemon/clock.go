package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/internal/clock"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/dnsfwd"
)

// clockPart keeps the box's time (NTP through the active uplink) and serves it to the LAN.
type clockPart struct {
	c       *clock.Clock
	serve   []netip.AddrPort // the LAN addresses, UDP 123; none when serve_lan is off
	clients []netip.Prefix
}

func newClockPart(a *App) (*clockPart, error) {
	c := a.Config()
	o := clock.Options{Servers: c.Time.Servers, Interval: c.Time.Interval, StateFile: filepath.Join(a.StateDir, "clock"),
		Bus: a.Bus, Log: a.Log.With("part", "clock"),
		Dial: func(ctx context.Context, address string) (net.Conn, error) { return uplinkDial(ctx, a, "udp", address) }}
	if c.Time.SetClock {
		o.Set = setSystemClock
	}
	p := &clockPart{c: clock.New(o)}
	if c.Time.ServeLAN {
		for _, pr := range c.LAN.Addresses {
			p.serve = append(p.serve, netip.AddrPortFrom(pr.Addr(), 123))
		}
		for _, s := range c.LAN.Subnets() {
			p.clients = append(p.clients, s.Prefix)
		}
	}
	return p, nil
}

func clockStartKey(c *config.Config) string {
	return fmt.Sprint(c.Time, c.LAN.Addresses)
}

// Run syncs, and serves SNTP on the LAN addresses; a listener that fails ends the part
// (the supervisor restarts it), a server that does not answer never does.
func (p *clockPart) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, len(p.serve)+1)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	lc := net.ListenConfig{Control: bind.Freebind}
	for _, a := range p.serve {
		pc, err := lc.ListenPacket(ctx, "udp", a.String())
		if err != nil {
			return fmt.Errorf("clock: listen %s: %w", a, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.c.Serve(ctx, pc, p.clients); err != nil {
				errc <- fmt.Errorf("clock: serve %s: %w", a, err)
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); errc <- p.c.Run(ctx) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// uplinkDial dials through the active uplink only (bound to its interface and address), or
// plainly when wan is off.
func uplinkDial(ctx context.Context, a *App, network, address string) (net.Conn, error) {
	if st, ok := wanStatus(a); ok {
		if via, ok := dnsfwd.Via(st); ok {
			return via.DialContext(ctx, network, address)
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// setSystemClock steps CLOCK_REALTIME (needs CAP_SYS_TIME: the daemon runs as root).
func setSystemClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock: set system clock: %w", err)
	}
	return nil
}

// boxClock is the clock part in force, nil while it does not run. The hooks for what must
// wait for a trusted clock (block expiry, backup ages, certificates) go through it.
func (a *App) boxClock() *clock.Clock {
	if a.parts == nil {
		return nil
	}
	a.parts.mu.Lock()
	defer a.parts.mu.Unlock()
	if p, ok := a.parts.on["clock"].runner().(*clockPart); ok {
		return p.c
	}
	return nil
}

// clockState is the clock's state for the page and /metrics; false while it does not run.
func clockState(a *App) (clock.State, bool) {
	if c := a.boxClock(); c != nil {
		return c.State(), true
	}
	return clock.State{}, false
}

// clockTrusted says whether the box's clock may be used for what lasts (block expiry,
// backup ages, certificates); false while the clock part does not run.
func (a *App) clockTrusted() bool {
	c := a.boxClock()
	return c != nil && c.Trusted()
}

// waitClockTrusted returns once the clock is trusted, or with ctx's error. It follows the
// clock part across restarts (a restart makes a new clock), so a waiter is never left on
// one that was replaced.
func (a *App) waitClockTrusted(ctx context.Context) error {
	for {
		if c := a.boxClock(); c != nil {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			err := c.WaitTrusted(wctx)
			cancel()
			if err == nil {
				return nil
			}
		} else {
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
