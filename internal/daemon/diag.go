package daemon

import (
	"net/netip"
	"slices"

	"github.com/officeedge/appliance/internal/diag"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// diagUplinks are the uplinks as the page's diagnostics leave through them, each with the
// resolvers the DNS part would ask through it: those its DHCP lease named, then the
// configured ones for its role, then resolv.conf's as a last resort.
func diagUplinks(a *App) []diag.Uplink {
	st, ok := wanStatus(a)
	if !ok {
		return []diag.Uplink{}
	}
	c := a.Config()
	configured := map[wan.Role][]netip.Addr{wan.Primary: addrs(c.DNS.Resolvers.Primary), wan.Backup: addrs(c.DNS.Resolvers.Backup)}
	out := []diag.Uplink{}
	for _, us := range st.Uplinks {
		u := diag.Uplink{Role: string(us.Role), Name: us.Name, Interface: us.Interface, Resolvers: []netip.AddrPort{}}
		if ad, err := netip.ParseAddr(us.Address); err == nil && ad.Is4() {
			u.Source = ad
		}
		all := append(append([]netip.Addr{}, us.DNS...), configured[us.Role]...)
		if len(all) == 0 {
			all = netcfg.Nameservers("/etc/resolv.conf")
		}
		for _, r := range all {
			ap := netip.AddrPortFrom(r.Unmap(), 53)
			if r.IsLoopback() || (ap.Addr().Is4() && !u.Source.IsValid()) || slices.Contains(u.Resolvers, ap) {
				continue
			}
			u.Resolvers = append(u.Resolvers, ap)
		}
		out = append(out, u)
	}
	return out
}
