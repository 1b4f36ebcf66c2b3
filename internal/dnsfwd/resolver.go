package dnsfwd

import (
	"context"
	"net"
)

// Resolver is a resolver for the box's own lookups (SMTP, feeds, backups, hostname
// peers) that asks this forwarder, so the box sees what the office sees: local names, the
// active uplink's resolvers, the cache.
func (f *Forwarder) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: f.Dial}
}

// Dial connects Go's resolver to the forwarder while it serves. When it does not (not
// started yet, restarting after a failure, stopped) it dials the active uplink's first
// resolver directly, through that uplink, so the box's own lookups never depend on the
// forwarder being up; with no uplink known either, it dials address (resolv.conf's).
func (f *Forwarder) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	if f.serving.Load() && len(f.o.Listen) > 0 {
		return d.DialContext(ctx, network, f.o.Listen[0].String())
	}
	if u := f.pick(); u != nil && len(u.Servers) > 0 {
		return u.DialContext(ctx, network, u.Servers[0].String())
	}
	return d.DialContext(ctx, network, address)
}
