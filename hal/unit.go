package hal

import (
	"context"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Unit drives one board from a panel: it lights the LEDs and reads the button.
type Unit struct {
	Board   Board
	Panel   *Panel
	Button  Button
	OnPress func(Press) // called from Run's goroutine; keep it short or hand off

	lit map[string]gpio.Level
}

// Step does one round at now: samples the button and sets each LED to its pattern's level.
// Run calls it every 10 ms; tests call it with their own clock.
func (u *Unit) Step(now time.Time) Press {
	if u.lit == nil {
		u.lit = map[string]gpio.Level{}
	}
	press := NoPress
	if b := u.Board.Button(); b != nil {
		press = u.Button.Sample(b.Read(), now)
	}
	if press != NoPress && u.OnPress != nil {
		u.OnPress(press)
	}
	u.Panel.Patterns() // records when a pattern changed, so each blink starts in phase
	for _, st := range u.Panel.LEDs() {
		out := u.Board.LED(st.Name)
		if out == nil {
			continue
		}
		l := gpio.Level(st.Pattern.Lit(now.Sub(st.Since)))
		if prev, ok := u.lit[st.Name]; ok && prev == l {
			continue // write only changes: a GPIO write is a syscall on real hardware
		}
		if out.Out(l) == nil {
			u.lit[st.Name] = l
		}
	}
	return press
}

// Run steps every 10 ms until ctx ends. Polling rather than edge interrupts: debouncing needs
// the level over time anyway, the LEDs need a clock, and 100 cheap reads a second cost
// nothing on a Pi.
func (u *Unit) Run(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, n := range LEDNames {
				if out := u.Board.LED(n); out != nil {
					_ = out.Out(gpio.Low)
				}
			}
			return nil
		case now := <-t.C:
			u.Step(now)
		}
	}
}
