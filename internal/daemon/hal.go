package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// The hal part: the LEDs show what the other parts' typed state says, and the button forces
// an uplink. Control API (registered by the daemon): POST /hal/button (controlPress),
// GET /hal/leds (leds).

// halPoll is how often the wan's status is read for the LEDs: the wan has no watch of its
// own, and a quarter of a second is as soon as a person sees an LED change.
const halPoll = 250 * time.Millisecond

// mailPoll is how often the mail queue is looked at (a directory listing).
const mailPoll = 5 * time.Second

// errHALParts means the daemon made the hal part before the parts it reads.
var errHALParts = errors.New("daemon: the hal part needs the firewall owner and the alerts")

// errWANOff means the button cannot force an uplink: the box has no failover part.
var errWANOff = errors.New("failover (wan) is off")

// halService drives the LEDs and reads the button. It owns the panel.
type halService struct {
	app     *App
	panel   *hal.Panel
	bmu     sync.Mutex
	board   hal.Board     // nil: no LEDs or button ("none", or a GPIO board not open)
	sim     *hal.SimBoard // the simulated board, pressed from the page and the CLI; nil otherwise
	presses chan hal.Press
	// ledsChanged hears of every LED change; handed from each hal part to the next, so the page,
	// which asks for it once, keeps hearing after a reload replaced the part.
	ledsChanged chan struct{}

	// The loop's caches: the newest block is found again only when the blocklist changed, the
	// mail queue is read every mailPoll.
	blocks    *netcfg.BlockState
	lastBlock time.Time
	mailAt    time.Time
	mailErr   string
}

// newHALPart makes the hal part. Its board is opened when it runs.
func newHALPart(app *App) (*halService, error) {
	if app.Owner == nil || app.Alerts == nil {
		return nil, errHALParts
	}
	cfg := app.Config().HAL
	s := &halService{app: app, panel: hal.New(nil, cfg.AlertBlink), presses: make(chan hal.Press, 4), ledsChanged: make(chan struct{}, 1)}
	if prev := app.HAL.Load(); prev != nil {
		s.ledsChanged = prev.ledsChanged
	}
	if cfg.Board == "sim" {
		s.sim = hal.NewSimBoard()
		s.setBoard(s.sim)
	}
	return s, nil
}

// openBoard opens a GPIO board. One that fails raises an alert and ends Run with the error,
// so the supervisor tries again with backoff (a loose ribbon cable may be pushed back); the
// rest of the box runs on without LEDs meanwhile.
func (s *halService) openBoard() error {
	cfg := s.app.Config().HAL
	if cfg.Board != "gpio" || s.getBoard() != nil {
		return nil
	}
	b, err := hal.OpenGPIO(hal.Pins{Health: cfg.HealthPin, Uplink: cfg.UplinkPin, Alert: cfg.AlertPin, Button: cfg.ButtonPin, ActiveLow: cfg.LEDsActiveLow})
	if err != nil {
		msg := "LEDs and button unavailable: " + err.Error()
		s.app.Alerts.Raise(alerts.KeyHALBoard, "hal", msg)
		s.app.Bus.Publish(events.Event{Kind: "hal.error", Severity: events.Alert, Source: "hal", Message: msg})
		return fmt.Errorf("hal: %w", err)
	}
	s.app.Alerts.Clear(alerts.KeyHALBoard)
	s.setBoard(b)
	return nil
}

func (s *halService) setBoard(b hal.Board) {
	s.bmu.Lock()
	s.board = b
	s.bmu.Unlock()
}

func (s *halService) getBoard() hal.Board {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	return s.board
}

// Run lights the LEDs and handles presses until ctx ends (then it returns nil). The panel is
// given the state again whenever the blocklist or the alerts change, and every halPoll.
func (s *halService) Run(ctx context.Context) error {
	if err := s.openBoard(); err != nil {
		return err
	}
	if b := s.getBoard(); b != nil {
		u := &hal.Unit{Board: b, Panel: s.panel, Button: hal.Button{Long: s.app.Config().HAL.LongPress}, OnPress: s.queuePress}
		done := make(chan struct{})
		go func() { defer close(done); _ = u.Run(ctx) }()
		defer func() { <-done }() // the LEDs are dark before the part is gone
	}
	blocks, stopBlocks := s.app.Owner.Watch()
	defer stopBlocks()
	alerted, stopAlerts := s.app.Alerts.Watch()
	defer stopAlerts()
	tick := time.NewTicker(halPoll)
	defer tick.Stop()
	s.refresh()
	for {
		select {
		case <-ctx.Done():
			return nil
		case p := <-s.presses:
			s.handlePress(ctx, p)
		case <-s.panel.Changed():
			select {
			case s.ledsChanged <- struct{}{}:
			default:
			}
			continue
		case <-tick.C:
		case <-blocks:
		case <-alerted:
		}
		s.refresh()
	}
}

// queuePress hands a press from the LED loop to Run; presses faster than they can be
// handled are dropped, never blocking the LEDs.
func (s *halService) queuePress(p hal.Press) {
	select {
	case s.presses <- p:
	default:
	}
}

// refresh gives the panel the box's state now.
func (s *halService) refresh() { s.panel.Update(s.state()) }

// state translates the parts' typed state into the panel's.
func (s *halService) state() hal.State {
	st := hal.State{Started: true, Active: hal.RolePrimary}
	if s.app.WAN != nil {
		wanState(&st, s.app.WAN.Status())
	}
	bs := s.app.Owner.State()
	st.ConfigError = bs.ConfigError != ""
	st.LastBlock = s.newestBlock(bs)
	// A block from before the last acknowledgement has been seen by a person.
	if !st.LastBlock.After(s.app.Alerts.AcknowledgedAt()) {
		st.LastBlock = time.Time{}
	}
	for _, a := range s.app.Alerts.List() {
		if !a.Acked && alerts.IsTollFraud(a.Key) {
			st.TollFraud = true
		}
	}
	if e := s.mailError(); e != "" {
		st.Degraded = append(st.Degraded, "alert emails failing: "+e)
	}
	return st
}

// wanState takes in the uplinks, the active one, the override and the trunks.
func wanState(st *hal.State, ws wan.Status) {
	st.Active, st.BothDown, st.Forced = string(ws.Active), ws.BothDown, ws.Mode != wan.Auto
	st.Started = false
	for _, u := range ws.Uplinks {
		st.Started = st.Started || u.State != wan.Unknown
		switch u.Role {
		case wan.Primary:
			st.PrimaryDown = u.State == wan.Down
		case wan.Backup:
			st.BackupDown = u.State == wan.Down
		}
	}
	for _, t := range ws.Trunks {
		if t.State == wan.Down {
			st.Degraded = append(st.Degraded, "trunk "+t.Name+" down")
		}
	}
}

// newestBlock is when sipguard last blocked an attacker, found again only when the
// blocklist changed (a snapshot is never changed once published).
func (s *halService) newestBlock(bs *netcfg.BlockState) time.Time {
	if bs == s.blocks {
		return s.lastBlock
	}
	var t time.Time
	for _, e := range bs.Entries {
		for _, c := range e.Claims {
			if c.Source == netcfg.SourceSIPGuard && c.Since.After(t) {
				t = c.Since
			}
		}
	}
	s.blocks, s.lastBlock = bs, t
	return t
}

// mailError is why alert emails cannot be sent ("" when they can, or there is no mail).
func (s *halService) mailError() string {
	if s.app.Mail == nil {
		return ""
	}
	if time.Since(s.mailAt) >= mailPoll {
		s.mailErr, s.mailAt = s.app.Mail.Status().LastError, time.Now()
	}
	return s.mailErr
}

// mode is the wan's override now ("off" without a wan).
func (s *halService) mode() wan.Mode {
	if s.app.WAN == nil {
		return "off"
	}
	return s.app.WAN.Status().Mode
}

// handlePress: short toggles forced backup / automatic; long returns to automatic and
// acknowledges alerts. Each press is published and audited.
func (s *halService) handlePress(ctx context.Context, p hal.Press) {
	before := s.mode()
	mode := wan.ForceBackup
	if p == hal.LongPress || before != wan.Auto {
		mode = wan.Auto
	}
	s.app.Bus.Publish(events.Event{Kind: "hal.button." + p.String(), Source: "hal", Message: fmt.Sprintf("button: %s press, uplink mode %s → %s", p, before, mode),
		Fields: map[string]string{"press": p.String(), "mode": string(mode)}})
	what := "uplink.force"
	if p == hal.LongPress {
		s.app.Alerts.Acknowledge()
		s.app.Bus.Publish(events.Event{Kind: "alert.acknowledged", Source: "hal", Message: "alerts acknowledged with the button"})
		what = "uplink.force+alert.acknowledge"
	}
	after := string(mode)
	if err := s.force(ctx, mode); err != nil {
		after = fmt.Sprintf("%s (failed: %v)", before, err)
		s.app.Bus.Publish(events.Event{Kind: "hal.force.failed", Severity: events.Warn, Source: "hal", Message: "button could not switch the uplink: " + err.Error(),
			Fields: map[string]string{"mode": string(mode)}})
	}
	s.audit(audit.Entry{Who: "button", From: "box", Via: "button", What: what + " (" + p.String() + " press)", Before: string(before), After: after})
}

// force sets the wan's override; the wan takes it in its own loop, so a wan that is
// stopping must not hold the button for long.
func (s *halService) force(ctx context.Context, m wan.Mode) error {
	if s.app.WAN == nil {
		return errWANOff
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.app.WAN.Force(ctx, m); err != nil {
		return fmt.Errorf("force %s: %w", m, err)
	}
	return nil
}

func (s *halService) audit(e audit.Entry) {
	if s.app.Audit == nil {
		return
	}
	if err := s.app.Audit.Record(e); err != nil {
		s.app.Log.Error("audit", "err", err)
	}
}

// Name is the board's kind, as the status page shows it: sim, gpio or none.
func (s *halService) Name() string {
	b := s.getBoard()
	if b == nil {
		return "none"
	}
	return b.Name()
}

// LEDs are the LEDs as they are now.
func (s *halService) LEDs() []hal.LEDState { return s.panel.LEDs() }

// Changed receives a value whenever an LED's pattern may have changed.
func (s *halService) Changed() <-chan struct{} { return s.ledsChanged }

// Press holds the simulated button (through its pins, debounce and all).
func (s *halService) Press(long bool) error {
	if s.sim == nil {
		return errors.New("hal: this box has a real button: press it on the box")
	}
	d := 200 * time.Millisecond
	if long {
		d = s.app.Config().HAL.LongPress + 300*time.Millisecond
	}
	return s.sim.Hold(d)
}

// controlPress serves `appliance button press [--long]` (POST /hal/button?long=1&who=NAME).
func (s *halService) controlPress(w http.ResponseWriter, r *http.Request) {
	long := r.URL.Query().Get("long") == "1"
	if err := s.Press(long); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	kind := "short"
	if long {
		kind = "long"
	}
	who := r.URL.Query().Get("who")
	if who == "" {
		who = "root"
	}
	s.audit(audit.Entry{Who: who, From: "console", Via: "cli", What: "button.press", After: kind + " (simulated)"})
	fmt.Fprintf(w, "pressed the simulated button (%s)\n", kind)
}

// leds serves GET /hal/leds: the LEDs as they are now.
func (s *halService) leds(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.panel.LEDs())
}
