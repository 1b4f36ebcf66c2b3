package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/events"
)

func init() {
	Register("hal", func(app *App) (Service, error) {
		cfg := app.Config().HAL
		p := partsOf(app)
		switch cfg.Board {
		case "gpio":
			b, err := hal.OpenGPIO(hal.Pins{Health: cfg.HealthPin, Uplink: cfg.UplinkPin, Alert: cfg.AlertPin, Button: cfg.ButtonPin, ActiveLow: cfg.LEDsActiveLow})
			if err != nil {
				// LEDs are not worth a box without its firewall service: go on without them, loudly.
				app.Log.Error("hal: no LEDs or button", "err", err)
				app.Bus.Publish(events.Event{Kind: "hal.error", Severity: events.Alert, Source: "hal", Message: "LEDs and button unavailable: " + err.Error()})
			} else {
				p.board = b
			}
		case "sim":
			p.sim = hal.NewSimBoard()
			p.board = p.sim
		}
		s := &halService{app: app, p: p, uplinks: controlUplinks{app}}
		p.hal = s
		app.Control.HandleFunc("POST /hal/button", s.controlPress)
		app.Control.HandleFunc("GET /hal/leds", func(w http.ResponseWriter, r *http.Request) { writeJSONResp(w, p.panel.LEDs()) })
		return s, nil
	})
}

// uplinkForcer forces an uplink: backup, primary or auto.
type uplinkForcer interface{ Force(mode string) error }

// controlUplinks reaches the wan part through the control API's POST /wan/force (body
// backup|primary|auto), served in this same process: the parts stay independent and the
// CLI uses the very same door.
type controlUplinks struct{ app *App }

func (u controlUplinks) Force(mode string) error {
	req, err := http.NewRequest("POST", "/wan/force", strings.NewReader(mode))
	if err != nil {
		return err
	}
	rec := &controlRecorder{header: http.Header{}, code: 200}
	u.app.Control.ServeHTTP(rec, req)
	switch {
	case rec.code == http.StatusNotFound || rec.code == http.StatusMethodNotAllowed:
		return errors.New("wan: forcing an uplink is not available in this build (no POST /wan/force)")
	case rec.code >= 300:
		return fmt.Errorf("wan: force %s: %s", mode, strings.TrimSpace(rec.body.String()))
	}
	return nil
}

// controlRecorder is a minimal in-process http.ResponseWriter.
type controlRecorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *controlRecorder) Header() http.Header         { return r.header }
func (r *controlRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *controlRecorder) WriteHeader(c int)           { r.code = c }

type halService struct {
	app     *App
	p       *sharedParts
	uplinks uplinkForcer
	presses chan hal.Press
}

func (s *halService) Run(ctx context.Context) error {
	ch, unsub := s.app.Bus.Subscribe(1024)
	defer unsub()
	for _, e := range s.app.Bus.Recent(1000) { // what happened while the daemon was starting
		s.p.panel.Observe(e)
	}
	s.presses = make(chan hal.Press, 4)
	if s.p.board != nil {
		u := &hal.Unit{Board: s.p.board, Panel: s.p.panel, Button: hal.Button{Long: s.app.Config().HAL.LongPress},
			OnPress: func(p hal.Press) {
				select {
				case s.presses <- p:
				default: // presses faster than they can be handled are dropped, never block the LEDs
				}
			}}
		go u.Run(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-ch:
			s.p.panel.Observe(e)
		case p := <-s.presses:
			s.handlePress(p)
		}
	}
}

// handlePress: short toggles forced backup / automatic; long returns to automatic and
// acknowledges alerts. Each press is published and audited.
func (s *halService) handlePress(p hal.Press) {
	before := "auto"
	if s.p.panel.Forced() {
		before = "backup"
	}
	mode := "backup"
	if p == hal.LongPress || before == "backup" {
		mode = "auto"
	}
	s.app.Bus.Publish(events.Event{Kind: "hal.button." + p.String(), Source: "hal", Message: fmt.Sprintf("button: %s press, uplink mode %s → %s", p, before, mode), Fields: map[string]string{"press": p.String(), "mode": mode}})
	what := "uplink.force"
	if p == hal.LongPress {
		s.p.panel.Acknowledge()
		s.app.Bus.Publish(events.Event{Kind: "alert.acknowledged", Source: "hal", Message: "alerts acknowledged with the button"})
		what = "uplink.force+alert.acknowledge"
	}
	err := s.uplinks.Force(mode)
	after := mode
	if err != nil {
		after = before + " (failed: " + err.Error() + ")"
		s.app.Bus.Publish(events.Event{Kind: "hal.force.failed", Severity: events.Warn, Source: "hal", Message: "button could not switch the uplink: " + err.Error(), Fields: map[string]string{"mode": mode}})
	} else {
		s.p.panel.SetForced(mode == "backup")
	}
	if aerr := s.p.audit.Record(audit.Entry{Who: "button", From: "box", Via: "button", What: what + " (" + p.String() + " press)", Before: before, After: after}); aerr != nil {
		s.app.Log.Error("audit", "err", aerr)
	}
}

// press holds the simulated button (through its pins, debounce and all).
func (s *halService) press(long bool) error {
	if s.p.sim == nil {
		return errors.New("hal: this box has a real button: press it on the box")
	}
	d := 200 * time.Millisecond
	if long {
		d = s.app.Config().HAL.LongPress + 300*time.Millisecond
	}
	return s.p.sim.Hold(d)
}

// controlPress serves `appliance button press [--long]`.
func (s *halService) controlPress(w http.ResponseWriter, r *http.Request) {
	long := r.URL.Query().Get("long") == "1"
	if err := s.press(long); err != nil {
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
	_ = s.p.audit.Record(audit.Entry{Who: who, From: "console", Via: "cli", What: "button.press", After: kind + " (simulated)"})
	fmt.Fprintf(w, "pressed the simulated button (%s)\n", kind)
}

// halBoard is what the status page sees of the board.
type halBoard struct{ s *halService }

func (b halBoard) Name() string {
	if b.s.p.board == nil {
		return "none"
	}
	return b.s.p.board.Name()
}
func (b halBoard) LEDs() []hal.LEDState  { return b.s.p.panel.LEDs() }
func (b halBoard) Forced() bool          { return b.s.p.panel.Forced() }
func (b halBoard) Press(long bool) error { return b.s.press(long) }
func (b halBoard) Acknowledge()          { b.s.p.panel.Acknowledge() }
