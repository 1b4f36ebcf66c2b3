package hal

import (
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/events"
)

// Panel turns what happens on the box (events) into what the LEDs show. It knows the other
// parts only by their event kinds: uplink.*, wan.*, trunk.*, sipguard.*, config.*, notify.*.
type Panel struct {
	mu         sync.Mutex
	now        func() time.Time
	started    time.Time
	grace      time.Duration // health shows "starting" this long, or until the first uplink news
	blinkFor   time.Duration // the alert LED blinks this long after a block
	heardWAN   bool
	configErr  bool
	down       map[string]bool // uplinks (by name or role) reported down
	active     string          // "primary" or "backup"
	bothDown   bool
	forced     bool
	degraded   map[string]bool // other reasons: trunk down, mail failing
	blockUntil time.Time
	tollFraud  bool
	since      map[string]time.Time // when each LED's pattern began (blinks start in phase)
	last       map[string]Pattern
	changed    chan struct{}
	roles      map[string]string // uplink name → role, from the config
}

// NewPanel returns a panel that starts on the primary uplink, showing "starting".
// roles maps uplink names ("FTTC") to their roles ("primary").
func NewPanel(now func() time.Time, roles map[string]string, blinkFor time.Duration) *Panel {
	if now == nil {
		now = time.Now
	}
	if blinkFor == 0 {
		blinkFor = 10 * time.Minute
	}
	p := &Panel{now: now, started: now(), grace: 5 * time.Second, blinkFor: blinkFor, active: "primary",
		down: map[string]bool{}, degraded: map[string]bool{}, since: map[string]time.Time{},
		last: map[string]Pattern{}, changed: make(chan struct{}, 1), roles: roles}
	return p
}

// Changed receives a value whenever an LED's pattern may have changed.
func (p *Panel) Changed() <-chan struct{} { return p.changed }

func (p *Panel) poke() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *Panel) role(name string) string {
	if r, ok := p.roles[name]; ok {
		return r
	}
	return name
}

// uplinkOf names the uplink an event is about (wan's field names are not fixed yet: accept the
// likely ones).
func uplinkOf(e events.Event) string {
	for _, k := range []string{"uplink", "role", "name", "link", "interface"} {
		if v := e.Fields[k]; v != "" {
			return v
		}
	}
	return ""
}

// Observe takes one event into account.
func (p *Panel) Observe(e events.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := strings.ToLower(e.Kind)
	switch {
	case k == "config.rejected":
		p.configErr = true
	case k == "config.changed":
		p.configErr = false
	case strings.HasPrefix(k, "notify."):
		if strings.Contains(k, "fail") {
			p.degraded["mail"] = true
		} else if strings.Contains(k, "sent") {
			delete(p.degraded, "mail")
		}
	case strings.HasPrefix(k, "trunk.") || strings.HasPrefix(k, "sipguard.trunk"):
		if strings.HasSuffix(k, ".down") {
			p.degraded["trunk:"+e.Fields["trunk"]] = true
		} else if strings.HasSuffix(k, ".up") {
			delete(p.degraded, "trunk:"+e.Fields["trunk"])
		}
	case strings.HasPrefix(k, "uplink.") || strings.HasPrefix(k, "wan."):
		p.heardWAN = true
		p.observeWAN(k, e)
	case strings.HasPrefix(k, "sipguard."):
		switch {
		case strings.Contains(k, "toll"):
			p.tollFraud = true
		case strings.Contains(k, "unblock"):
		case strings.Contains(k, "block") || strings.Contains(k, "flood"):
			at := e.Time
			if at.IsZero() {
				at = p.now()
			}
			if until := at.Add(p.blinkFor); until.After(p.blockUntil) {
				p.blockUntil = until
			}
		}
	case k == "alert.acknowledged":
		p.tollFraud = false
		p.blockUntil = time.Time{}
	}
	p.poke()
}

func (p *Panel) observeWAN(k string, e events.Event) {
	if v := firstOf(e.Fields["active"], e.Fields["to"]); v != "" && v != "none" {
		p.active = p.role(v)
	}
	if m := e.Fields["mode"]; m != "" && (strings.Contains(k, "force") || strings.Contains(k, "override")) {
		p.forced = m == "backup" || m == "primary"
	}
	name := p.role(uplinkOf(e))
	state := e.Fields["state"]
	switch {
	case strings.HasSuffix(k, ".down"):
		state = "down"
	case strings.HasSuffix(k, ".up"):
		state = "up"
	}
	if name != "" && state != "" {
		p.down[name] = state == "down"
		if state == "up" {
			p.bothDown = false
		}
	}
	switch {
	case strings.Contains(k, "failover") && e.Fields["to"] == "" && e.Fields["active"] == "":
		p.active = "backup"
	case strings.Contains(k, "failback") && e.Fields["to"] == "" && e.Fields["active"] == "":
		p.active = "primary"
	case strings.HasSuffix(k, "both_down"):
		p.bothDown = true
	case strings.HasSuffix(k, "online"):
		p.bothDown = false
	}
	if p.down["primary"] && p.down["backup"] {
		p.bothDown = true
	}
}

// SetForced records that the backup uplink was forced (or automatic again).
func (p *Panel) SetForced(forced bool) {
	p.mu.Lock()
	p.forced = forced
	p.mu.Unlock()
	p.poke()
}

// Forced says whether the backup uplink is forced.
func (p *Panel) Forced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forced
}

// Acknowledge clears the alert LED.
func (p *Panel) Acknowledge() {
	p.mu.Lock()
	p.tollFraud = false
	p.blockUntil = time.Time{}
	p.mu.Unlock()
	p.poke()
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
	out := map[string]Pattern{}

	switch {
	case p.configErr || (!p.heardWAN && now.Sub(p.started) < p.grace):
		out[LEDHealth] = FastBlink
	case p.bothDown || p.active != "primary" || p.down["primary"] || p.down["backup"] || len(p.degraded) > 0:
		out[LEDHealth] = SlowBlink
	default:
		out[LEDHealth] = On
	}

	switch {
	case p.bothDown || p.active == "":
		out[LEDUplink] = Off
	case p.forced && p.active == "backup":
		out[LEDUplink] = SlowBlink
	case p.active == "backup":
		out[LEDUplink] = DoubleFlash
	default:
		out[LEDUplink] = On
	}

	switch {
	case p.tollFraud:
		out[LEDAlert] = On
	case now.Before(p.blockUntil):
		out[LEDAlert] = FastBlink
	default:
		out[LEDAlert] = Off
	}
	for n, pat := range out {
		if p.last[n] != pat {
			p.last[n] = pat
			p.since[n] = now
		}
	}
	return out
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

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
