package sipguard

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/events"
)

type action struct {
	f      Finding
	what   string
	sample string
	at     time.Time
}

// Run works through findings until ctx ends, then waits for evidence still being written.
// Blocks and the checks against the owner's blocklist run here, one at a time.
func (g *Guard) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	changed, unwatch := g.o.Blocker.Watch()
	defer unwatch()
	g.bg.Add(1)
	go func() { defer g.bg.Done(); g.holdLoop(ctx) }()
	g.reconcile(time.Now()) // what changed before the watch began
	for {
		select {
		case <-ctx.Done():
			g.bg.Wait()
			return nil
		case a := <-g.acts:
			g.act(ctx, a)
		case <-changed:
			g.reconcile(time.Now())
		case now := <-tick.C:
			g.mu.Lock()
			g.eng.Expire(now.Add(-10 * time.Minute))
			g.tcp.expire(now.Add(-streamIdle).UnixNano())
			g.mu.Unlock()
			g.expireEntries(now)
		}
	}
}

func eventKind(k Kind) string {
	switch k {
	case KindTollFraud, KindCallRate, KindConcurrent:
		return "sipguard.tollfraud"
	case KindFlood:
		return "sipguard.flood"
	case KindScanner:
		return "sipguard.scanner"
	case KindWeakAuth:
		return "sipguard.posture"
	}
	return "sipguard.attack"
}

func (g *Guard) act(ctx context.Context, a action) {
	f := a.f
	fields := map[string]string{"addr": f.Actor.String(), "reason": f.Kind.String(), "detail": a.what, "count": fmt.Sprint(f.Count)}
	if f.Kind == KindWeakAuth {
		g.o.Bus.Publish(events.Event{Kind: "sipguard.posture", Severity: events.Warn, Source: "sipguard", Fields: fields,
			Message: fmt.Sprintf("extension %s authenticates with its own number as auth name: give it a separate, random auth ID", a.what)})
		return
	}
	g.mu.Lock()
	// Thresholds change on reload, under g.mu.
	local, trusted := g.eng.local(f.Actor), g.eng.trusted(f.Actor)
	g.mu.Unlock()
	if trusted {
		g.mu.Lock()
		g.Stats.Alerts++
		g.mu.Unlock()
		g.o.Bus.Publish(events.Event{Kind: "sipguard.peer", Severity: events.Alert, Source: "sipguard", Fields: fields,
			Message: fmt.Sprintf("trusted peer %s misbehaving (%s: %s); trusted peers are never blocked", f.Actor, f.Kind, a.what)})
		return
	}
	if local {
		g.mu.Lock()
		g.Stats.Alerts++
		g.mu.Unlock()
		msg := fmt.Sprintf("%s from office host %s: %s (the kernel drops UDP INVITEs to denied destinations)", f.Kind, f.Actor, a.what)
		g.o.Bus.Publish(events.Event{Kind: eventKind(f.Kind), Severity: events.Alert, Source: "sipguard", Fields: fields, Message: msg})
		g.tollFraudAlert(f, msg)
		return
	}
	switch f.Kind {
	case KindSiteUser:
		g.mu.Lock()
		g.Stats.Alerts++
		ceiling := g.eng.T.SiteCeiling
		g.mu.Unlock()
		msg := fmt.Sprintf("extension %s at %s keeps failing its password (%d times): %s has phones that register, so it is not blocked "+
			"for one user's mistakes (only past %d failures a minute); check that phone's password", a.what, f.Actor, f.Count, f.Actor, ceiling)
		g.o.Bus.Publish(events.Event{Kind: "sipguard.siteuser", Severity: events.Warn, Source: "sipguard", Fields: fields, Message: msg})
		if g.o.Alerts != nil {
			g.o.Alerts.Raise(alerts.KeySIPSiteUser+"/"+f.Actor.String()+"/"+a.what, "sipguard", msg)
		}
		return
	case KindTollFraud, KindCallRate, KindConcurrent:
		msg := fmt.Sprintf("toll-fraud attempt from %s: %s %s", f.Actor, f.Kind, a.what)
		g.o.Bus.Publish(events.Event{Kind: "sipguard.tollfraud", Severity: events.Alert, Source: "sipguard", Fields: fields, Message: msg})
		g.tollFraudAlert(f, msg)
	case KindScanner, KindFlood:
		g.o.Bus.Publish(events.Event{Kind: eventKind(f.Kind), Severity: events.Warn, Source: "sipguard", Fields: fields,
			Message: fmt.Sprintf("%s from %s: %s", f.Kind, f.Actor, a.what)})
	}
	p := netip.PrefixFrom(f.Actor, f.Actor.BitLen())
	if f.Net.IsValid() {
		p = f.Net
	}
	g.block(ctx, f.Actor, p, f.Kind, f.Proof, a.what, a.at)
}

// tollFraudAlert raises a toll-fraud finding as an alert, one per source.
func (g *Guard) tollFraudAlert(f Finding, msg string) {
	switch f.Kind {
	case KindTollFraud, KindCallRate, KindConcurrent:
		if g.o.Alerts != nil {
			g.o.Alerts.Raise(alerts.KeyTollFraud+"/"+f.Actor.String(), "sipguard", msg)
		}
	}
}
