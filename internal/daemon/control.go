package daemon

import (
	"context"
	"errors"

	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/wan"
)

// errWANOff means an uplink cannot be forced: the box has no failover part.
var errWANOff = errors.New("failover (wan) is off")

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
