package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/officeedge/appliance/internal/audit"
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
	s, err := vpn.New(vpn.Options{Config: c, StateDir: a.StateDir, Log: a.Log.With("part", "vpn"), Revoked: func(name, pub string) {
		if err := a.Audit.Record(audit.Entry{Who: "daemon", From: "box", Via: "config", What: "vpn.revoke", Before: name + " " + pub}); err != nil {
			a.Log.Error("audit", "err", err)
		}
	}})
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

// vpnRotate is `appliance vpn rotate NAME` (POST /vpn/rotate?name=NAME): the peer gets a new
// key pair, the old key stops working at once, and the answer is the peer's new config.
func (a *App) vpnRotate(w http.ResponseWriter, r *http.Request) {
	s := a.VPN.Load()
	if s == nil {
		http.Error(w, "the VPN is off ([vpn] enabled = false)", http.StatusServiceUnavailable)
		return
	}
	name := r.URL.Query().Get("name")
	rot, err := s.Rotate(name)
	if rot.Changed() { // recorded even when the interface did not take it: the key is new
		before, after := rot.Audit()
		a.audit(r, "vpn.rotate", before, after)
	}
	switch {
	case errors.Is(err, vpn.ErrNoPeer):
		http.Error(w, fmt.Sprintf("no VPN peer named %q in the config", name), http.StatusNotFound)
		return
	case errors.Is(err, vpn.ErrOwnKey):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	conf, err := s.ClientConfig(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(conf))
}
