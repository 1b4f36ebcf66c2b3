package hal

import (
	"reflect"
	"slices"
	"sync"
	"time"
)

// Uplink roles, as State.Active names them.
const (
	RolePrimary = "primary"
	RoleBackup  = "backup"
)

// State is what the LEDs show, read from the other parts' typed state (the daemon's hal
// part translates wan's status, the blocklist and the alerts into it).
type State struct {
	Started     bool      // the uplinks' health has been reported (or there is no wan to wait for)
	Active      string    // RolePrimary or RoleBackup: the uplink carrying traffic
	PrimaryDown bool      // the fixed line is down
	BackupDown  bool      // the modem is down
	BothDown    bool      // no uplink carries traffic
	Forced      bool      // an uplink is forced by hand (button, page, CLI)
	Degraded    []string  // other reasons the box is degraded: "trunk ITSP down", "alert emails failing"
	LastBlock   time.Time // the newest block of an attacker not yet acknowledged (zero: none)
	TollFraud   bool      // an unacknowledged toll-fraud alert
	ConfigError bool      // the last configuration was refused
}

// normal is s with what compares equal made equal (no reasons: nil), copied.
func (s State) normal() State {
	if len(s.Degraded) == 0 {
		s.Degraded = nil
	}
	s.Degraded = slices.Clone(s.Degraded)
	return s
}

// Panel turns the box's state into what the LEDs show.
type Panel struct {
	mu       sync.Mutex
	now      func() time.Time
	started  time.Time
	grace    time.Duration // health shows "starting" this long, or until the uplinks are reported
	blinkFor time.Duration // the alert LED blinks this long after a block
	st       State
	since    map[string]time.Time // when each LED's pattern began (blinks start in phase)
	last     map[string]Pattern
	changed  chan struct{}
}

// New returns a panel that starts on the primary uplink, showing "starting". now is the
// clock (nil: time.Now); blinkFor is how long the alert LED blinks after a block (0: 10 min).
func New(now func() time.Time, blinkFor time.Duration) *Panel {
	if now == nil {
		now = time.Now
	}
	if blinkFor == 0 {
		blinkFor = 10 * time.Minute
	}
	return &Panel{now: now, started: now(), grace: 5 * time.Second, blinkFor: blinkFor,
		st: State{Active: RolePrimary}, since: map[string]time.Time{}, last: map[string]Pattern{}, changed: make(chan struct{}, 1)}
}

// Update takes the box's state in; Changed hears of it when it differs from the last one.
func (p *Panel) Update(s State) {
	s = s.normal()
	p.mu.Lock()
	same := reflect.DeepEqual(p.st, s)
	p.st = s
	p.mu.Unlock()
	if !same {
		p.poke()
	}
}

// State returns the state last given to Update.
func (p *Panel) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.normal()
}

// Changed receives a value whenever an LED's pattern may have changed.
func (p *Panel) Changed() <-chan struct{} { return p.changed }

func (p *Panel) poke() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// LEDState is one LED as it is now.
type LEDState struct {
	Name    string    `json:"name"`
	Pattern Pattern   `json:"pattern"`
	Lit     bool      `json:"lit"`
	Since   time.Time `json:"since"`
	Steps   []int64   `json:"steps,omitempty"` // on/off milliseconds, for the page to animate
	Means   string    `json:"means"`
}

// Patterns computes each LED's pattern now.
func (p *Panel) Patterns() map[string]Pattern {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	out := map[string]Pattern{
		LEDHealth: p.health(now),
		LEDUplink: p.uplink(),
		LEDAlert:  p.alert(now),
	}
	for n, pat := range out {
		if p.last[n] != pat {
			p.last[n] = pat
			p.since[n] = now
		}
	}
	return out
}

// health is the health LED's pattern; p.mu is held.
func (p *Panel) health(now time.Time) Pattern {
	s := p.st
	switch {
	case s.ConfigError || (!s.Started && now.Sub(p.started) < p.grace):
		return FastBlink
	case s.BothDown || s.Active != RolePrimary || s.PrimaryDown || s.BackupDown || len(s.Degraded) > 0:
		return SlowBlink
	}
	return On
}

// uplink is the uplink LED's pattern; p.mu is held.
func (p *Panel) uplink() Pattern {
	s := p.st
	switch {
	case s.BothDown || s.Active == "":
		return Off
	case s.Forced && s.Active == RoleBackup:
		return SlowBlink
	case s.Active == RoleBackup:
		return DoubleFlash
	}
	return On
}

// alert is the alert LED's pattern; p.mu is held.
func (p *Panel) alert(now time.Time) Pattern {
	s := p.st
	switch {
	case s.TollFraud:
		return On
	case !s.LastBlock.IsZero() && now.Before(s.LastBlock.Add(p.blinkFor)):
		return FastBlink
	}
	return Off
}

// LEDs returns every LED's state now.
func (p *Panel) LEDs() []LEDState {
	pats := p.Patterns()
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []LEDState
	for _, n := range LEDNames {
		pat := pats[n]
		st := LEDState{Name: n, Pattern: pat, Since: p.since[n], Lit: pat.Lit(now.Sub(p.since[n])), Steps: pat.Steps()}
		for _, m := range Meanings {
			if m.LED == n && m.Pattern == pat {
				st.Means = m.Means
			}
		}
		out = append(out, st)
	}
	return out
}
