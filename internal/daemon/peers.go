package daemon

import (
	"net/http"
	"net/netip"

	"github.com/officeedge/appliance/internal/dnsfwd"
	"github.com/officeedge/appliance/internal/peers"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
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

// peerServers are the DNS servers the names are asked of (dnsfwd.BoxServers).
func peerServers(a *App) []netip.AddrPort {
	cfg := a.Config()
	var fwd []netip.Addr
	if dnsfwd.BoxForwarder() != nil {
		for _, p := range cfg.LAN.Addresses {
			fwd = append(fwd, p.Addr())
		}
	}
	var st *wan.Status
	if ws, ok := wanStatus(a); ok {
		st = &ws
	}
	return dnsfwd.BoxServers(fwd, st, configuredResolvers(cfg), netcfg.Nameservers("/etc/resolv.conf"))
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
