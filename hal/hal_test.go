package hal

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// fakeBoard is three gpiotest LEDs and a gpiotest button.
type fakeBoard struct {
	leds   map[string]*gpiotest.Pin
	button *gpiotest.Pin
}

func newFake() *fakeBoard {
	f := &fakeBoard{leds: map[string]*gpiotest.Pin{}, button: &gpiotest.Pin{N: "BTN", L: gpio.High}}
	for _, n := range LEDNames {
		f.leds[n] = &gpiotest.Pin{N: n}
	}
	return f
}
func (f *fakeBoard) Name() string             { return "fake" }
func (f *fakeBoard) LED(n string) gpio.PinOut { return f.leds[n] }
func (f *fakeBoard) Button() gpio.PinIn       { return f.button }
func (f *fakeBoard) lit(n string) bool        { return f.leds[n].Read() == gpio.High }
func (f *fakeBoard) setButton(l gpio.Level)   { _ = f.button.Out(l) }
func (f *fakeBoard) ledTrace(u *Unit, n string, start time.Time, step, total time.Duration) string {
	var b strings.Builder
	for t := time.Duration(0); t < total; t += step {
		u.Step(start.Add(t))
		if f.lit(n) {
			b.WriteByte('#')
		} else {
			b.WriteByte('.')
		}
	}
	return b.String()
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup() (*clock, *fakeBoard, *Unit) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newFake()
	p := New(c.now, time.Minute)
	return c, f, &Unit{Board: f, Panel: p}
}

// The LEDs follow the box's state with the documented patterns, read on the GPIO pins.
func TestLEDPatterns(t *testing.T) {
	c, f, u := setup()
	// Starting: health blinks fast (150 ms on, 150 ms off), uplink on (primary), alert dark.
	got := f.ledTrace(u, LEDHealth, c.t, 50*time.Millisecond, 600*time.Millisecond)
	if got != "###...###..." {
		t.Errorf("health while starting = %q, want fast blink ###...###...", got)
	}
	if !f.lit(LEDUplink) || f.lit(LEDAlert) {
		t.Errorf("uplink lit=%v alert lit=%v, want on/off", f.lit(LEDUplink), f.lit(LEDAlert))
	}

	// Past the start grace with nothing wrong: health steady on.
	c.t = c.t.Add(10 * time.Second)
	if got := f.ledTrace(u, LEDHealth, c.t, 250*time.Millisecond, 3*time.Second); got != strings.Repeat("#", 12) {
		t.Errorf("health when fine = %q, want steady on", got)
	}

	// Failover to the modem: uplink double-flashes, health blinks slowly.
	fine := State{Started: true, Active: RolePrimary}
	onModem := fine
	onModem.Active, onModem.PrimaryDown = RoleBackup, true
	u.Panel.Update(onModem)
	c.t = c.t.Add(time.Second)
	if got := f.ledTrace(u, LEDUplink, c.t, 150*time.Millisecond, 2*time.Second); !strings.HasPrefix(got, "#.#..........") {
		t.Errorf("uplink on backup = %q, want double flash #.#..........", got)
	}
	if got := f.ledTrace(u, LEDHealth, c.t.Add(2*time.Second), 500*time.Millisecond, 4*time.Second); got != "##..##.." {
		t.Errorf("health when degraded = %q, want slow blink ##..##..", got)
	}

	// Both uplinks down: uplink dark.
	down := onModem
	down.BackupDown, down.BothDown = true, true
	u.Panel.Update(down)
	c.t = c.t.Add(10 * time.Second)
	if got := f.ledTrace(u, LEDUplink, c.t, 100*time.Millisecond, 2*time.Second); got != strings.Repeat(".", 20) {
		t.Errorf("uplink with both down = %q, want dark", got)
	}

	// A block: the alert LED blinks fast for the configured minute, then goes dark by itself.
	blocked := fine
	blocked.LastBlock = c.t
	u.Panel.Update(blocked)
	if got := f.ledTrace(u, LEDAlert, c.t, 150*time.Millisecond, 1200*time.Millisecond); got != "#.#.#.#." {
		t.Errorf("alert after a block = %q, want fast blink", got)
	}
	c.t = c.t.Add(2 * time.Minute)
	if got := f.ledTrace(u, LEDAlert, c.t, 150*time.Millisecond, 600*time.Millisecond); got != "...." {
		t.Errorf("alert long after a block = %q, want dark", got)
	}

	// Toll fraud: steady while its alert is unacknowledged.
	fraud := blocked
	fraud.TollFraud = true
	u.Panel.Update(fraud)
	c.t = c.t.Add(time.Hour)
	if got := f.ledTrace(u, LEDAlert, c.t, 100*time.Millisecond, time.Second); got != strings.Repeat("#", 10) {
		t.Errorf("alert after toll fraud = %q, want steady on", got)
	}
	u.Panel.Update(blocked)
	if got := f.ledTrace(u, LEDAlert, c.t, 100*time.Millisecond, time.Second); got != strings.Repeat(".", 10) {
		t.Errorf("alert after acknowledge = %q, want dark", got)
	}

	// A refused configuration: health blinks fast again; a trunk down: slowly.
	refused := fine
	refused.ConfigError = true
	u.Panel.Update(refused)
	if got := f.ledTrace(u, LEDHealth, c.t, 150*time.Millisecond, 600*time.Millisecond); got != "#.#." {
		t.Errorf("health after a refused config = %q, want fast blink", got)
	}
	trunk := fine
	trunk.Degraded = []string{"trunk ITSP down"}
	u.Panel.Update(trunk)
	if got := f.ledTrace(u, LEDHealth, c.t, 500*time.Millisecond, 4*time.Second); got != "##..##.." {
		t.Errorf("health with a trunk down = %q, want slow blink", got)
	}
}

// bounce drives the button pin like a real contact: a burst of chatter, then the level.
func bounce(f *fakeBoard, u *Unit, at time.Time, final gpio.Level, presses *[]Press) time.Time {
	chatter := []gpio.Level{final, !final, final, !final, !final, final, !final, final}
	for _, l := range chatter {
		f.setButton(l)
		if p := u.Step(at); p != NoPress {
			*presses = append(*presses, p)
		}
		at = at.Add(2 * time.Millisecond)
	}
	f.setButton(final)
	return at
}

func hold(f *fakeBoard, u *Unit, at time.Time, d time.Duration, presses *[]Press) time.Time {
	end := at.Add(d)
	for ; at.Before(end); at = at.Add(10 * time.Millisecond) {
		if p := u.Step(at); p != NoPress {
			*presses = append(*presses, p)
		}
	}
	return at
}

// A bouncing contact counts as one press; a short press and a long press are told apart, and
// the long one is recognised while the button is still held.
func TestButtonDebounceShortLong(t *testing.T) {
	c, f, u := setup()
	var presses []Press
	at := c.t
	at = hold(f, u, at, 100*time.Millisecond, &presses) // idle

	// Chatter shorter than the debounce time alone is no press at all.
	at = bounce(f, u, at, gpio.High, &presses)
	at = hold(f, u, at, 100*time.Millisecond, &presses)
	if len(presses) != 0 {
		t.Fatalf("chatter with the button released gave presses %v", presses)
	}

	// Short press: bounce in, hold 300 ms, bounce out: exactly one short press.
	at = bounce(f, u, at, gpio.Low, &presses)
	at = hold(f, u, at, 300*time.Millisecond, &presses)
	if !u.Button.Held() {
		t.Fatal("button not seen held after the contact settled")
	}
	at = bounce(f, u, at, gpio.High, &presses)
	at = hold(f, u, at, 100*time.Millisecond, &presses)
	if len(presses) != 1 || presses[0] != ShortPress {
		t.Fatalf("short press gave %v, want [short]", presses)
	}

	// Long press: recognised at 5 s while still held, nothing more on release.
	presses = nil
	at = bounce(f, u, at, gpio.Low, &presses)
	at = hold(f, u, at, 4900*time.Millisecond, &presses)
	if len(presses) != 0 {
		t.Fatalf("4.9 s into a press: %v, want nothing yet", presses)
	}
	at = hold(f, u, at, 200*time.Millisecond, &presses)
	if len(presses) != 1 || presses[0] != LongPress {
		t.Fatalf("after 5.1 s held: %v, want [long]", presses)
	}
	at = bounce(f, u, at, gpio.High, &presses)
	hold(f, u, at, 100*time.Millisecond, &presses)
	if len(presses) != 1 {
		t.Fatalf("release after a long press gave %v, want nothing more", presses)
	}
}

// The simulated board goes through the same debounce and press logic, in real time.
func TestSimBoardPress(t *testing.T) {
	s := NewSimBoard()
	p := New(nil, 0)
	got := make(chan Press, 4)
	u := &Unit{Board: s, Panel: p, OnPress: func(pr Press) { got <- pr }}
	ctx, cancel := contextWithCancel()
	defer cancel()
	go u.Run(ctx)
	if err := s.Hold(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case pr := <-got:
		if pr != ShortPress {
			t.Fatalf("simulated short press gave %v", pr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("simulated press not seen within 5 s")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !s.Lit(LEDUplink) {
		if time.Now().After(deadline) {
			t.Fatal("the simulated uplink LED never lit")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// docs/leds.md carries the table generated from the one definition of the patterns.
func TestDocsTable(t *testing.T) {
	b, err := os.ReadFile("../docs/leds.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != Doc() {
		t.Errorf("docs/leds.md is not what hal/patterns.go says; regenerate it with `go run ./hal/gendoc > docs/leds.md`")
	}
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

// The uplink LED says which uplink carries traffic and whether it was forced.
func TestUplinkLED(t *testing.T) {
	c, _, u := setup()
	c.t = c.t.Add(time.Minute)
	pat := func(s State) Pattern { u.Panel.Update(s); return u.Panel.Patterns()[LEDUplink] }
	for _, tc := range []struct {
		name string
		s    State
		want Pattern
	}{
		{"on the fixed line", State{Started: true, Active: RolePrimary}, On},
		{"failed over to the modem", State{Started: true, Active: RoleBackup, PrimaryDown: true}, DoubleFlash},
		{"modem forced", State{Started: true, Active: RoleBackup, Forced: true}, SlowBlink},
		{"fixed line forced", State{Started: true, Active: RolePrimary, Forced: true}, On},
		{"both down", State{Started: true, Active: RolePrimary, PrimaryDown: true, BackupDown: true, BothDown: true}, Off},
		{"nothing active", State{Started: true}, Off},
	} {
		if got := pat(tc.s); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// Changed hears of a state that differs from the last one, and only then.
func TestPanelChanged(t *testing.T) {
	_, _, u := setup()
	woken := func() bool {
		select {
		case <-u.Panel.Changed():
			return true
		default:
			return false
		}
	}
	s := State{Started: true, Active: RolePrimary, Degraded: []string{"trunk ITSP down"}}
	u.Panel.Update(s)
	if !woken() {
		t.Fatal("a new state did not wake Changed")
	}
	u.Panel.Update(State{Started: true, Active: RolePrimary, Degraded: []string{"trunk ITSP down"}})
	if woken() {
		t.Error("the same state again woke Changed")
	}
	s.Degraded[0] = "changed behind the panel's back"
	if got := u.Panel.State().Degraded; got[0] != "trunk ITSP down" {
		t.Errorf("the panel keeps the caller's slice: %v", got)
	}
	u.Panel.Update(State{Started: true, Active: RoleBackup})
	if !woken() {
		t.Error("a failover did not wake Changed")
	}
}

// On a machine without a GPIO character device the real board says what is missing.
func TestOpenGPIOWithoutChip(t *testing.T) {
	if _, err := os.Stat("/dev/gpiochip0"); err == nil {
		t.Log("this machine has a GPIO chip: the error path cannot be shown here")
		return
	}
	_, err := OpenGPIO(Pins{Health: "GPIO17"})
	if err == nil || !strings.Contains(err.Error(), `"GPIO17" not found`) {
		t.Fatalf("OpenGPIO without a chip: %v, want a clear not-found error", err)
	}
}
