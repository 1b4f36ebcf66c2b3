package daemon

import (
	"context"
	"errors"
	"io"

	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/wan"
)

// DefaultControl is where the daemon listens for the CLI.
const DefaultControl = control.DefaultSocket

// errWANOff means an uplink cannot be forced: the box has no failover part.
var errWANOff = errors.New("failover (wan) is off")

// Call sends one request to a running daemon's control API and returns its answer (see
// control.Client.Call, which the CLI uses; this stays for the labs that call it).
func Call(socket, method, path string, body io.Reader) ([]byte, error) {
	return control.Client{Socket: socket}.Call(context.Background(), method, path, body)
}

// newActions connects the actions to the parts, each reached where it is at each call (a
// reload may replace the hal part).
func (a *App) newActions() *control.Actions {
	x := &control.Actions{
		WAN:    func() (wan.Status, bool) { return wanStatus(a) },
		Force:  func(ctx context.Context, m wan.Mode) error { return wanForce(ctx, a, m) },
		Alerts: a.Alerts, Audit: a.Audit, Bus: a.Bus, Log: a.Log,
		Press: liveBoard{a}.Press,
	}
	if a.Owner != nil {
		x.Blocklist = a.Owner
	}
	return x
}

// actions are the page's, the control socket's and the button's actions: App.Actions, or
// ones made now for an App made without them (tests).
func (a *App) actions() *control.Actions {
	if a.Actions != nil {
		return a.Actions
	}
	return a.newActions()
}
