package daemon

import (
	"context"

	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/cfgedit"
	"github.com/officeedge/appliance/internal/events"
)

// keyConfigReverted is the alert raised when a change made on the page was not confirmed
// and the earlier file was put back.
const keyConfigReverted = "config.reverted"

// editPart puts back the page's changes that are not confirmed in time; its Editor is
// App.Edits, made once (a restart of the part keeps the change waiting).
type editPart struct{ e *cfgedit.Editor }

func (p *editPart) Run(ctx context.Context) error { return p.e.Run(ctx) }

// newEditPart makes the config editor: the history and the change waiting for its
// confirmation sit next to the config file (on /perm on the image), so a restart of the
// daemon inside the window still puts the change back.
func newEditPart(a *App) (*editPart, error) {
	if a.Edits == nil {
		e, err := cfgedit.New(cfgedit.Options{Path: a.ConfigPath, Window: a.ConfirmWindow, Log: a.Log,
			Reload: a.reloadAs,
			Unset: func() { // Run returns ErrSetup
				if a.unset != nil {
					a.unsetOnce.Do(func() { close(a.unset) })
				}
			},
			Audit: func(who, what, before, after string) {
				if err := a.Audit.Record(audit.Entry{Who: who, From: "box", Via: "web", What: what, Before: before, After: after}); err != nil {
					a.Log.Error("audit", "err", err)
				}
			},
			Alert: func(msg string) {
				if msg == "" {
					a.Alerts.Clear(keyConfigReverted)
					return
				}
				a.Alerts.Raise(keyConfigReverted, "config", msg)
				a.Bus.Publish(events.Event{Kind: "config.reverted", Severity: events.Alert, Source: "daemon", Message: msg})
			}})
		if err != nil {
			return nil, err
		}
		a.Edits = e
	}
	return &editPart{e: a.Edits}, nil
}
