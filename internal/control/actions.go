package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// Sentinels the doors map to their answers (see StatusCode).
var (
	// ErrUnavailable means the part an action needs is off or missing.
	ErrUnavailable = errors.New("not available")
	// ErrNoButton means the box's button cannot be pressed from here (a real one is).
	ErrNoButton = errors.New("this box's button is a real one: press it on the box")
)

// forceTimeout bounds waiting for the wan to take an override: it takes it in its own loop,
// and a wan that is stopping must not hold a person (or the button) for long.
const forceTimeout = 5 * time.Second

// Actor is who asks for an action and through which door, as the audit log names them.
type Actor struct {
	Who  string // "admin" on the page, the console user, "button"
	From string // the page's client address, "console", "box"
	Via  string // "web", "cli", "button"
}

// Page is the status page's admin at addr.
func Page(addr string) Actor { return Actor{Who: "admin", From: addr, Via: "web"} }

// Console is a user of the CLI on the box (root when unnamed).
func Console(user string) Actor { return Actor{Who: cmp.Or(user, "root"), From: "console", Via: "cli"} }

// Button is the box's own button.
var Button = Actor{Who: "button", From: "box", Via: "button"}

// By names the actor on a blocklist claim.
func (a Actor) By() string {
	if a.Via == "web" {
		return fmt.Sprintf("%s (web %s)", a.Who, a.From)
	}
	return fmt.Sprintf("%s (%s)", a.Who, a.Via)
}

// door says where an action came from, for event messages.
func (a Actor) door() string {
	switch a.Via {
	case "web":
		return "on the status page"
	case "button":
		return "with the button"
	case "cli":
		return "from the console by " + a.Who
	}
	return "by " + a.By()
}

// Blocklist is the part of the firewall owner the actions change.
type Blocklist interface {
	Block(netcfg.BlockRequest) (netcfg.Entry, error)
	Unblock(p netip.Prefix, by string) (netcfg.Entry, error)
}

// Actions are the actions a person takes, one implementation whichever door they use (the
// page, the control socket, the button): each writes its audit record and publishes its
// event once, the same way. Nil parts make their actions ErrUnavailable.
type Actions struct {
	WAN       func() (wan.Status, bool)             // the wan's status; false when it is off
	Force     func(context.Context, wan.Mode) error // the wan's override
	Blocklist Blocklist
	Alerts    *alerts.Store
	Press     func(long bool) error // holds the simulated button; nil: no button to press
	Audit     *audit.Log
	Bus       *events.Bus
	Log       *slog.Logger
}

type unavailable string

func (e unavailable) Error() string      { return string(e) }
func (unavailable) Is(target error) bool { return target == ErrUnavailable }
func (x *Actions) record(a Actor, what, before, after string) {
	if x.Audit == nil {
		return
	}
	if err := x.Audit.Record(audit.Entry{Who: a.Who, From: a.From, Via: a.Via, What: what, Before: before, After: after}); err != nil && x.Log != nil {
		x.Log.Error("audit", "err", err)
	}
}

func (x *Actions) publish(a Actor, kind string, sev events.Severity, msg string, fields map[string]string) {
	if x.Bus != nil {
		x.Bus.Publish(events.Event{Kind: kind, Severity: sev, Source: a.Via, Message: msg, Fields: fields})
	}
}

// Mode is the wan's override now, and whether the wan runs.
func (x *Actions) Mode() (wan.Mode, bool) {
	if x.WAN == nil || x.Force == nil {
		return "", false
	}
	st, on := x.WAN()
	return st.Mode, on
}

// ForceUplink sets the uplink override: audited as uplink.force (before and after) and
// published as uplink.force; a failure is published as uplink.force.failed.
func (x *Actions) ForceUplink(ctx context.Context, a Actor, m wan.Mode) error {
	before, on := x.Mode()
	if !on {
		return unavailable("forcing an uplink is not available: failover (wan) is off")
	}
	ctx, cancel := context.WithTimeout(ctx, forceTimeout)
	defer cancel()
	fields := map[string]string{"mode": string(m)}
	if err := x.Force(ctx, m); err != nil {
		x.publish(a, "uplink.force.failed", events.Warn, fmt.Sprintf("forcing %s %s failed: %v", m, a.door(), err), fields)
		return fmt.Errorf("force %s: %w", m, err)
	}
	x.record(a, "uplink.force", string(before), string(m))
	x.publish(a, "uplink.force", events.Info, fmt.Sprintf("uplink mode set to %s %s", m, a.door()), fields)
	return nil
}

// Block blocks r.Prefix by hand (a manual claim): audited as block and published as
// block.manual. The owner's refusals (netcfg.ErrProtected, ErrTooWide) come back as they are.
func (x *Actions) Block(a Actor, r BlockRequest) (netcfg.Entry, error) {
	if x.Blocklist == nil {
		return netcfg.Entry{}, unavailable("the blocklist is not available")
	}
	p := r.Prefix.Masked()
	if !p.IsValid() {
		return netcfg.Entry{}, errors.New("block: no address given")
	}
	reason := cmp.Or(strings.TrimSpace(r.Reason), "blocked by hand")
	e, err := x.Blocklist.Block(netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceManual, By: a.By(), Reason: reason, For: r.For, Force: r.Force})
	if err != nil {
		return e, err
	}
	addr := PrefixText(e.Prefix)
	x.record(a, "block", "", BlockRecord(e.Prefix, r.For, reason))
	x.publish(a, "block.manual", events.Info, fmt.Sprintf("%s blocked by hand %s for %s", addr, a.door(), forText(r.For)), map[string]string{"addr": addr, "reason": reason})
	return e, nil
}

// Unblock removes the manual claims on r.Prefix: audited as unblock (before: the claims)
// and published as block.manual.unblock.
func (x *Actions) Unblock(a Actor, r UnblockRequest) (netcfg.Entry, error) {
	if x.Blocklist == nil {
		return netcfg.Entry{}, unavailable("the blocklist is not available")
	}
	p := r.Prefix.Masked()
	e, err := x.Blocklist.Unblock(p, a.By())
	if err != nil {
		return e, err
	}
	addr := PrefixText(p)
	x.record(a, "unblock", claimsText(e), "")
	x.publish(a, "block.manual.unblock", events.Info, fmt.Sprintf("%s unblocked by hand %s", addr, a.door()), map[string]string{"addr": addr})
	return e, nil
}

// Acknowledge acknowledges every alert: audited as alert.acknowledge (before: the keys
// acknowledged) and published as alert.acknowledged. It returns how many there were.
func (x *Actions) Acknowledge(a Actor) (int, error) {
	if x.Alerts == nil {
		return 0, unavailable("no alerts are kept")
	}
	var keys []string
	for _, al := range x.Alerts.List() {
		if !al.Acked {
			keys = append(keys, al.Key)
		}
	}
	x.Alerts.Acknowledge()
	x.record(a, "alert.acknowledge", strings.Join(keys, ", "), "")
	x.publish(a, "alert.acknowledged", events.Info, fmt.Sprintf("%d alert(s) acknowledged %s", len(keys), a.door()), nil)
	return len(keys), nil
}

// PressButton presses the simulated button: audited as button.press, then held (a long
// press holds it for seconds) in a goroutine whose result done receives; a failure is
// published as button.press.failed. The press's effect (the uplink forced, the alerts
// acknowledged) is the button's own door.
func (x *Actions) PressButton(a Actor, long bool) (done <-chan error, err error) {
	if x.Press == nil {
		return nil, ErrNoButton
	}
	kind := PressName(long)
	x.record(a, "button.press", "", kind+" (simulated)")
	ch := make(chan error, 1)
	go func() {
		err := x.Press(long)
		if err != nil {
			x.publish(a, "button.press.failed", events.Warn, fmt.Sprintf("simulated button press %s failed: %v", a.door(), err), nil)
		}
		ch <- err
	}()
	return ch, nil
}

// BlockRecord is a block as the audit log records it (after): "192.0.2.7 for 1h0m0s (reason)".
func BlockRecord(p netip.Prefix, d time.Duration, reason string) string {
	return fmt.Sprintf("%s for %s (%s)", PrefixText(p), forText(d), reason)
}

// PrefixText shows a single address without its /32 or /128.
func PrefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().Unmap().String()
	}
	return p.Masked().String()
}

func forText(d time.Duration) string {
	if d == 0 {
		return "ever"
	}
	return d.String()
}

// claimsText is an entry's claims for the audit log: "manual by admin (web ...): reason; ...".
func claimsText(e netcfg.Entry) string {
	var parts []string
	for _, c := range e.Claims {
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("%s by %s: %s", c.Source, c.By, c.Reason)))
	}
	for _, f := range e.Feeds {
		parts = append(parts, netcfg.FeedSource(f))
	}
	return PrefixText(e.Prefix) + " (" + strings.Join(parts, "; ") + ")"
}

// StatusCode is the HTTP status a door answers an action's error with; fallback for errors
// that are none of the known kinds (the owner has no sentinel for "not blocked", which an
// unblock answers as a conflict).
func StatusCode(err error, fallback int) int {
	switch {
	case errors.Is(err, netcfg.ErrProtected), errors.Is(err, netcfg.ErrTooWide):
		return 409
	case errors.Is(err, ErrNoButton):
		return 409
	case errors.Is(err, ErrUnavailable), errors.Is(err, netcfg.ErrOwnerStopped):
		return 503
	}
	return fallback
}
