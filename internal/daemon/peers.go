package daemon

import (
	"net/http"
	"net/netip"
	"slices"

	"github.com/officeedge/appliance/internal/dnsfwd"
	"github.com/officeedge/appliance/internal/peers"
	"github.com/officeedge/appliance/netcfg"
)

// newPeersPart makes the resolver of trusted host names, or nil when the config names none.
func newPeersPart(a *App) (*peers.Resolver, error) {
	cfg := a.Config()
	any := len(cfg.Admin.Hosts) > 0
	for _, p := range cfg.SIPPeers {
		any = any || len(p.Hosts) > 0
	}
	if !any {
		a.Peers.Store(nil)
		return nil, nil
	}
	r := peers.New(peers.Options{Config: a.Config, Servers: func() []netip.AddrPort { return peerServers(a) },
		Owner: a.Owner, Alerts: a.Alerts, Bus: a.Bus, Log: a.Log.With("part", "peers"), StateDir: a.StateDir})
	a.Peers.Store(r)
	return r, nil
}

// peerServers are the DNS servers the names are asked of: the box's forwarder while it
// serves (it goes out through the active uplink and follows a failover), then the active
// uplink's own resolvers, then resolv.conf's, so a forwarder that is down costs one timeout.
func peerServers(a *App) []netip.AddrPort {
	cfg := a.Config()
	var out []netip.AddrPort
	add := func(as ...netip.Addr) {
		for _, x := range as {
			ap := netip.AddrPortFrom(x.Unmap(), 53)
			if x.IsValid() && !slices.Contains(out, ap) {
				out = append(out, ap)
			}
		}
	}
	if boxDNS.Load() != nil {
		for _, p := range cfg.LAN.Addresses {
			if p.Addr().Is4() {
				add(p.Addr())
			}
		}
	}
	if st, ok := wanStatus(a); ok {
		if via, ok := dnsfwd.Via(st); ok {
			var learned []netip.Addr
			for _, u := range st.Uplinks {
				if u.Role == st.Active {
					learned = u.DNS
				}
			}
			for _, s := range dnsfwd.Servers(via.Source, learned, configuredResolvers(cfg)[st.Active], nil, nil) {
				add(s.Addr())
			}
		}
	}
	add(netcfg.Nameservers("/etc/resolv.conf")...)
	return out
}

// peersStatus answers GET /peers/status: each trusted name with its addresses.
func (a *App) peersStatus(w http.ResponseWriter, _ *http.Request) {
	r := a.Peers.Load()
	if r == nil {
		writeJSON(w, []peers.Name{})
		return
	}
	writeJSON(w, r.Status())
}
