package daemon

import (
	"context"
	"fmt"
	"net/http"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/kernelfeat"
	"github.com/officeedge/appliance/internal/relay/box"
	"github.com/officeedge/appliance/internal/web"
)

// relaySpec is the voice relay's box side ([relay], issue 22): the tunnel over the lines, the
// voice route into it, and direct voice while the relay answers on no line.
func relaySpec() partSpec {
	return partSpec{name: "relay", make: func(a *App) (runner, error) { return orNil(newRelayPart(a)) }, startKey: relayStartKey}
}

// relayPart runs box.Part; its firewall half (the tunnel as an uplink, replies back through
// it) comes from the same [relay] through the owner.
type relayPart struct{ p *box.Part }

// newRelayPart makes the part, or nil when [relay] has no endpoint.
func newRelayPart(a *App) (*relayPart, error) {
	c := a.Config()
	if !c.Relay.Enabled() {
		a.Relay.Store(nil)
		return nil, nil
	}
	if !kernelfeat.Has(a.Kernel, "policy routing") {
		// The voice route is an ip rule into the tunnel's table: without it the part would
		// only fail at every check. Said once, and on the page until the kernel has it.
		a.Relay.Store(nil)
		a.Log.Warn("relay: off: the kernel has no policy routing (IP_MULTIPLE_TABLES), so voice cannot be routed into the relay's tunnel")
		if a.Alerts != nil {
			a.Alerts.Raise(box.AlertKey, "relay", "the voice relay is configured but this kernel has no policy routing (IP_MULTIPLE_TABLES): "+
				"calls go direct, from the lines' own addresses (docs/kernels.md)")
		}
		return nil, nil
	}
	// The owner protects the relay's address (resolved by the part) from every block; a nil
	// owner interface, not a typed nil, when there is none.
	var owner box.Owner
	if a.Owner != nil {
		owner = a.Owner
	}
	p, err := box.New(box.Options{Config: c, StateDir: a.StateDir, Log: a.Log.With("part", "relay"), WAN: a.WAN,
		Owner: owner, Alerts: a.Alerts})
	if err != nil {
		a.Relay.Store(nil)
		return nil, err
	}
	a.Relay.Store(p)
	return &relayPart{p: p}, nil
}

func (r *relayPart) Run(ctx context.Context) error { return r.p.Run(ctx) }

// Reload takes duplicate and all_traffic in place: the tunnel and its calls live on.
func (r *relayPart) Reload(c *config.Config) error { return r.p.Reload(c) }

// relayStartKey are the settings the tunnel is made with.
func relayStartKey(c *config.Config) string {
	var lines []string
	for _, u := range c.Uplink.All() {
		lines = append(lines, u.Name+"="+u.Interface)
	}
	r := c.Relay
	return fmt.Sprint(r.Endpoint, r.PublicKey, r.Tunnel, r.Interface, r.ProbeInterval, lines, c.LAN.Interface)
}

// relayStatus is `appliance relay status` (GET /relay/status).
func (a *App) relayStatus(w http.ResponseWriter, r *http.Request) {
	p := a.Relay.Load()
	if p == nil {
		http.Error(w, "the relay is off ([relay] has no endpoint)", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, p.Status())
}

// relayWeb is the relay part in force for the page (web.Options.Relay); false when off.
func relayWeb(a *App) (web.Relay, bool) {
	if p := a.Relay.Load(); p != nil {
		return p, true
	}
	return nil, false
}
