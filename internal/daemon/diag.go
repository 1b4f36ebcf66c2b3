package daemon

import (
	"net/netip"

	"github.com/officeedge/appliance/internal/diag"
	"github.com/officeedge/appliance/internal/dnsfwd"
	"github.com/officeedge/appliance/netcfg"
)

// diagUplinks are the uplinks as the page's diagnostics leave through them, each with the
// resolvers the DNS part would ask through it.
func diagUplinks(a *App) []diag.Uplink {
	st, ok := wanStatus(a)
	if !ok {
		return []diag.Uplink{}
	}
	configured := configuredResolvers(a.Config())
	system := netcfg.Nameservers("/etc/resolv.conf")
	out := []diag.Uplink{}
	for _, us := range st.Uplinks {
		u := diag.Uplink{Role: string(us.Role), Name: us.Name, Interface: us.Interface}
		if ad, err := netip.ParseAddr(us.Address); err == nil && ad.Is4() {
			u.Source = ad
		}
		u.Resolvers = dnsfwd.Servers(u.Source, us.DNS, configured[us.Role], system, nil)
		out = append(out, u)
	}
	return out
}
