package hal

import (
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Press is what a finished (or long enough) button press means.
type Press int

// Presses.
const (
	NoPress Press = iota
	ShortPress
	LongPress
)

func (p Press) String() string {
	switch p {
	case ShortPress:
		return "short"
	case LongPress:
		return "long"
	}
	return "none"
}

// Button debounces a push button wired to ground with a pull-up (Low = pressed) and tells
// short from long presses. A contact bounces for a few milliseconds when it closes and opens:
// a level counts only once it has stayed the same for Debounce.
type Button struct {
	Debounce time.Duration // default 30 ms
	Long     time.Duration // default 5 s

	stable    gpio.Level
	candidate gpio.Level
	candSince time.Time
	pressedAt time.Time
	longSent  bool
	init      bool
}

// Sample feeds the level read at now and returns a press when one is recognised: a long press
// as soon as the button has been held for Long (so the LEDs answer while it is still held), a
// short press on release.
func (b *Button) Sample(l gpio.Level, now time.Time) Press {
	if b.Debounce == 0 {
		b.Debounce = 30 * time.Millisecond
	}
	if b.Long == 0 {
		b.Long = 5 * time.Second
	}
	if !b.init {
		b.init, b.stable, b.candidate, b.candSince = true, gpio.High, l, now
	}
	if l != b.candidate {
		b.candidate, b.candSince = l, now
	}
	if b.candidate != b.stable && now.Sub(b.candSince) >= b.Debounce {
		b.stable = b.candidate
		if b.stable == gpio.Low {
			b.pressedAt, b.longSent = b.candSince, false
		} else if !b.longSent {
			return ShortPress
		}
	}
	if b.stable == gpio.Low && !b.longSent && now.Sub(b.pressedAt) >= b.Long {
		b.longSent = true
		return LongPress
	}
	return NoPress
}

// Held says whether the button is (debounced) pressed.
func (b *Button) Held() bool { return b.init && b.stable == gpio.Low }
