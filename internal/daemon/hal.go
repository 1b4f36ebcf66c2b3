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
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// The hal part: the LEDs show what the other parts' typed state says, and the button forces
// an uplink. Control API (registered by the daemon): GET /hal/leds (leds); the simulated
// button's press is an action (control.Actions.PressButton).

// mailPoll is how often the mail queue is looked at (a directory listing).
const mailPoll = 5 * time.Second

// errHALParts means the daemon made the hal part before the parts it reads.
var errHALParts = errors.New("daemon: the hal part needs the firewall owner and the alerts")

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
// given the state again whenever the wan, the blocklist or the alerts change, and every
// mailPoll for the mail queue (which has no watch).
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
	var uplinks <-chan struct{}
	if s.app.WAN != nil {
		ch, stopWAN := s.app.WAN.Watch()
		defer stopWAN()
		uplinks = ch
	}
	tick := time.NewTicker(mailPoll)
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
		case <-uplinks:
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

// state gathers the parts' typed state; hal.StateOf says what the LEDs make of it.
func (s *halService) state() hal.State {
	in := hal.Sources{AckedAt: s.app.Alerts.AcknowledgedAt(), Alerts: s.app.Alerts.List(), MailError: s.mailError()}
	if s.app.WAN != nil {
		ws := s.app.WAN.Status()
		in.WAN = &ws
	}
	bs := s.app.Owner.State()
	in.ConfigError = bs.ConfigError != ""
	in.LastBlock = s.newestBlock(bs)
	return hal.StateOf(in)
}

// newestBlock is when sipguard last blocked an attacker, found again only when the
// blocklist changed (a snapshot is never changed once published).
func (s *halService) newestBlock(bs *netcfg.BlockState) time.Time {
	if bs != s.blocks {
		s.blocks, s.lastBlock = bs, hal.NewestBlock(bs)
	}
	return s.lastBlock
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
	if m, on := s.app.actions().Mode(); on {
		return m
	}
	return "off"
}

// handlePress: short toggles forced backup / automatic; long returns to automatic and
// acknowledges alerts. The press is published (the button's own event); forcing and
// acknowledging are the actions every door shares, audited and published there.
func (s *halService) handlePress(ctx context.Context, p hal.Press) {
	before := s.mode()
	mode := wan.ForceBackup
	if p == hal.LongPress || before != wan.Auto {
		mode = wan.Auto
	}
	s.app.Bus.Publish(events.Event{Kind: "hal.button." + p.String(), Source: "hal", Message: fmt.Sprintf("button: %s press, uplink mode %s → %s", p, before, mode),
		Fields: map[string]string{"press": p.String(), "mode": string(mode)}})
	x := s.app.actions()
	if p == hal.LongPress {
		_, _ = x.Acknowledge(control.Button)
	}
	if err := x.ForceUplink(ctx, control.Button, mode); err != nil {
		s.app.Log.Warn("button could not switch the uplink", "err", err) // published by the action
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

// leds serves GET /hal/leds: the LEDs as they are now.
func (s *halService) leds(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.panel.LEDs())
}
