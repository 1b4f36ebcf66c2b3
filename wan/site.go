package wan

import (
	"fmt"
	"time"
)

// Role names an uplink.
type Role string

// The two uplinks.
const (
	Primary Role = "primary"
	Backup  Role = "backup"
)

func (r Role) other() Role {
	if r == Primary {
		return Backup
	}
	return Primary
}

// Mode is the manual override.
type Mode string

// Override modes: auto decides by health; the others pin an uplink while it is usable.
const (
	Auto        Mode = "auto"
	ForcePrim   Mode = "primary"
	ForceBackup Mode = "backup"
)

// ParseMode reads "auto", "primary" or "backup".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, ForcePrim, ForceBackup:
		return m, nil
	}
	return "", fmt.Errorf("wan: %q is not one of auto, primary, backup", s)
}

// Decision is a switch the site wants, with why.
type Decision struct {
	To     Role
	Kind   string // failover, failback, switch, override
	Reason string
}

// Site is the state machine that picks the active uplink from both uplinks' states. Like
// Health it has no clock and no I/O.
type Site struct {
	Active Role
	Mode   Mode

	stability, holdMax time.Duration
	HoldDown           time.Duration // the stability period in force: doubles per flap
	cleanSince         time.Time     // primary up (not degraded) without a break since
	lastFailback       time.Time
	Flaps              int
	BothDown           bool
	hasBackup          bool
}

// NewSite starts on the primary, in auto.
func NewSite(stability, holdMax time.Duration, hasBackup bool) *Site {
	return &Site{Active: Primary, Mode: Auto, stability: stability, holdMax: holdMax, HoldDown: stability, hasBackup: hasBackup}
}

// FailbackAt says when the primary will have been clean for the hold-down (zero: not clean).
func (s *Site) FailbackAt() time.Time {
	if s.cleanSince.IsZero() {
		return time.Time{}
	}
	return s.cleanSince.Add(s.HoldDown)
}

// Decide looks at both states and returns a switch to make, if any. The caller applies it
// and then calls Switched. p and b are the primary's and backup's states.
func (s *Site) Decide(p, b State, now time.Time) *Decision {
	if !s.hasBackup {
		b = Down
	}
	// Track how long the primary has been clean; a relapse while waiting is a flap.
	if p == Up {
		if s.cleanSince.IsZero() {
			s.cleanSince = now
		}
	} else {
		if !s.cleanSince.IsZero() && s.Active == Backup && p == Down {
			s.flap(now)
		}
		s.cleanSince = time.Time{}
	}
	// A primary that has stayed clean in service for hold_down_max has stopped flapping.
	if s.Active == Primary && p == Up && !s.lastFailback.IsZero() && now.Sub(s.lastFailback) >= s.holdMax {
		s.HoldDown, s.Flaps, s.lastFailback = s.stability, 0, time.Time{}
	}
	s.BothDown = p == Down && b == Down

	state := map[Role]State{Primary: p, Backup: b}
	act, oth := s.Active, s.Active.other()
	switch s.Mode {
	case ForcePrim, ForceBackup:
		want := Role(s.Mode)
		if act != want && state[want] != Down {
			return &Decision{To: want, Kind: "override", Reason: fmt.Sprintf("forced to %s by the operator", want)}
		}
		if act == want && state[want] == Down && state[oth].usable() {
			return &Decision{To: oth, Kind: "switch", Reason: fmt.Sprintf("forced %s is down, %s is %s", want, oth, state[oth])}
		}
		return nil
	}
	// Auto. Never switch to an uplink that is not usable.
	if state[act] == Down && state[oth].usable() {
		if act == Primary {
			return &Decision{To: Backup, Kind: "failover", Reason: fmt.Sprintf("primary down, backup %s", b)}
		}
		return &Decision{To: Primary, Kind: "switch", Reason: fmt.Sprintf("backup down, primary %s", p)}
	}
	if act == Backup && p == Up && !s.cleanSince.IsZero() && now.Sub(s.cleanSince) >= s.HoldDown {
		return &Decision{To: Primary, Kind: "failback", Reason: fmt.Sprintf("primary clean for %s", now.Sub(s.cleanSince).Round(time.Millisecond))}
	}
	return nil
}

// Switched records that the active uplink is now to.
func (s *Site) Switched(d *Decision, now time.Time) {
	switch d.Kind {
	case "failover":
		// Failing over soon after a failback means the primary is flapping.
		if !s.lastFailback.IsZero() && now.Sub(s.lastFailback) < s.holdMax {
			s.flap(now)
		}
	case "failback":
		s.lastFailback = now
	}
	s.Active = d.To
}

func (s *Site) flap(time.Time) {
	s.Flaps++
	s.HoldDown = min(s.HoldDown*2, s.holdMax)
}

// SetMode changes the override; the next Decide acts on it.
func (s *Site) SetMode(m Mode) { s.Mode = m }
