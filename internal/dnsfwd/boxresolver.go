package dnsfwd

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/officeedge/appliance/wan"
)

// box is the forwarder the box's own lookups go through; nil while [dns] is off.
var (
	box         atomic.Pointer[Forwarder]
	resolverSet sync.Once
)

// UseForBox makes f the forwarder the box's own lookups go through (nil: none, [dns] is
// off). It takes effect at the next lookup, once UseBoxResolver has run.
func UseForBox(f *Forwarder) { box.Store(f) }

// BoxForwarder is the forwarder the box's own lookups go through now; nil while [dns] is off.
func BoxForwarder() *Forwarder { return box.Load() }

// UseBoxResolver replaces net.DefaultResolver, once per process. Every part that dials by
// name (notify's SMTP, the feeds' HTTP, backups' SFTP and S3, hostname peers) goes through
// a net.Dialer without a resolver of its own, i.e. through the default one, so this one
// change moves them all onto the forwarder without threading a resolver through each
// library. It stays Go's own resolver (resolv.conf's search list and options, /etc/hosts);
// only where its packets go changes: to the forwarder while it serves, else straight to the
// active uplink's resolvers through that uplink (Forwarder.Dial), and with [dns] off
// to resolv.conf's servers as before.
func UseBoxResolver() {
	resolverSet.Do(func() {
		net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if f := box.Load(); f != nil {
				return f.Dial(ctx, network, address)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		}}
	})
}

// BoxServers are the DNS servers a part that takes a list of them asks (the trusted host
// names' resolver): the forwarder's IPv4 LAN addresses while it serves the box (it goes out
// through the active uplink and follows a failover), then the active uplink's own
// resolvers (st: wan's status, nil without wan), then the system's (resolv.conf), so a
// forwarder that is down costs one timeout.
func BoxServers(forwarder []netip.Addr, st *wan.Status, configured map[wan.Role][]netip.Addr, system []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	add := func(as ...netip.Addr) {
		for _, x := range as {
			ap := netip.AddrPortFrom(x.Unmap(), 53)
			if x.IsValid() && !slices.Contains(out, ap) {
				out = append(out, ap)
			}
		}
	}
	for _, a := range forwarder {
		if a.Is4() {
			add(a)
		}
	}
	if st != nil {
		if via, ok := Via(*st); ok {
			var learned []netip.Addr
			for _, u := range st.Uplinks {
				if u.Role == st.Active {
					learned = u.DNS
				}
			}
			for _, s := range Servers(via.Source, learned, configured[st.Active], nil, nil) {
				add(s.Addr())
			}
		}
	}
	add(system...)
	return out
}
