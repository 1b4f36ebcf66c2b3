package daemon

import (
	"context"
	"fmt"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/vpn"
	"github.com/officeedge/appliance/internal/web"
)

// vpnPart is the WireGuard door for remote phones; the firewall's VPN zone comes from the
// same [vpn] through the owner.
type vpnPart struct{ s *vpn.Service }

// newVPNPart makes the part, or nil when [vpn] is off.
func newVPNPart(a *App) (*vpnPart, error) {
	c := a.Config()
	if !c.VPN.Enabled {
		a.VPN.Store(nil)
		return nil, nil
	}
	s, err := vpn.New(vpn.Options{Config: c, StateDir: a.StateDir, Log: a.Log.With("part", "vpn")})
	if err != nil {
		a.VPN.Store(nil)
		return nil, err
	}
	a.VPN.Store(s)
	return &vpnPart{s: s}, nil
}

func (p *vpnPart) Run(ctx context.Context) error { return p.s.Run(ctx) }

// Reload takes new peers and their keys in place: their sessions live on.
func (p *vpnPart) Reload(c *config.Config) error { return p.s.Reload(c) }

// vpnStartKey are the settings the interface is made with.
func vpnStartKey(c *config.Config) string {
	return fmt.Sprint(c.VPN.Enabled, c.VPN.Interface, c.VPN.ListenPort, c.VPN.Address)
}

// vpnWeb is the VPN part in force for the page (web.Options.VPN); false when off.
func vpnWeb(a *App) (web.VPN, bool) {
	if s := a.VPN.Load(); s != nil {
		return s, true
	}
	return nil, false
}
