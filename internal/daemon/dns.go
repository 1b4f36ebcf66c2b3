package daemon

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/dnsfwd"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// dnsPart is the LAN's DNS forwarder.
type dnsPart struct{ f *dnsfwd.Forwarder }

func (p *dnsPart) Run(ctx context.Context) error { return p.f.Run(ctx) }

// Stats are the forwarder's counters (zero when it is off).
func (p *dnsPart) Stats() dnsfwd.Stats {
	if p == nil {
		return dnsfwd.Stats{}
	}
	return p.f.Stats()
}

// dnsStats are the forwarder in force's counters for /metrics; false when it is off.
func (a *App) dnsStats() (dnsfwd.Stats, bool) {
	if a.parts == nil {
		return dnsfwd.Stats{}, false
	}
	a.parts.mu.Lock()
	p, _ := a.parts.on["dns"].runner().(*dnsPart)
	a.parts.mu.Unlock()
	if p == nil {
		return dnsfwd.Stats{}, false
	}
	return p.Stats(), true
}

// newDNSPart makes the forwarder, and points the box's own lookups at it.
func newDNSPart(a *App) (*dnsPart, error) {
	c := a.Config()
	if !c.DNS.Enabled {
		dnsfwd.UseForBox(nil)
		return nil, nil
	}
	f := dnsfwd.New(dnsOptions(a, c))
	dnsfwd.UseForBox(f)
	return &dnsPart{f: f}, nil
}

// dnsStartKey is everything the forwarder reads: a change restarts it (in well under a
// second; the box's own lookups go straight to the uplink's resolvers meanwhile).
func dnsStartKey(c *config.Config) string {
	return fmt.Sprint(c.DNS, c.LAN.Addresses, c.PBX.Address, c.PBX.Address6, c.VPN.Enabled, c.VPN.Address)
}

func dnsOptions(a *App, c *config.Config) dnsfwd.Options {
	o := dnsfwd.Options{
		WAN: func() (wan.Status, bool) { return wanStatus(a) }, Bus: a.Bus, Log: a.Log.With("part", "dns"),
		Learned:    func(u wan.UplinkStatus) []netip.Addr { return u.DNS },
		Configured: configuredResolvers(c),
		System:     netcfg.Nameservers("/etc/resolv.conf"),
		Domain:     c.DNS.Domain, BoxName: c.DNS.BoxName, CacheSize: c.DNS.CacheSize, RebindAllow: c.DNS.RebindAllow,
		RateLimit: c.DNS.RateLimit, RateBurst: c.DNS.RateBurst, Static: map[string][]netip.Addr{}, Hosts: a.dhcpHostnames,
	}
	if a.WAN != nil {
		o.Watch = a.WAN.Watch
	}
	for _, p := range c.LAN.Addresses {
		o.Listen = append(o.Listen, netip.AddrPortFrom(p.Addr(), 53))
		o.Static[c.DNS.BoxName] = append(o.Static[c.DNS.BoxName], p.Addr())
	}
	if c.VPN.Enabled {
		// The phones' configs may name the box as their DNS server (vpn.dns; the firewall
		// lets their queries in only then).
		o.Clients = append(o.Clients, c.VPN.Address.Masked())
	}
	for _, p := range c.LAN.Subnets() {
		o.LAN = append(o.LAN, p.Prefix)
	}
	for _, x := range []config.Addr{c.PBX.Address, c.PBX.Address6} {
		if x.IsValid() {
			o.Static[c.DNS.PBXName] = append(o.Static[c.DNS.PBXName], x.Addr)
		}
	}
	return o
}

// configuredResolvers are the [dns.resolvers] of each uplink role.
func configuredResolvers(c *config.Config) map[wan.Role][]netip.Addr {
	return map[wan.Role][]netip.Addr{wan.Primary: addrs(c.DNS.Resolvers.Primary), wan.Backup: addrs(c.DNS.Resolvers.Backup)}
}

func addrs(as []config.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		out = append(out, a.Addr)
	}
	return out
}
