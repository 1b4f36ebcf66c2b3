package hal

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/host/v3"
	"periph.io/x/host/v3/gpioioctl"
)

// Board is the box's hardware: three LEDs and a button.
type Board interface {
	Name() string
	LED(name string) gpio.PinOut // nil: this board lacks that LED
	Button() gpio.PinIn          // nil: no button
}

// headerChips are the labels of the gpiochips that carry the 40-pin header's GPIOn as line n:
// the Pi 5's RP1 and the Pi 4's SoC under mainline kernels (ours, image/kernel).
var headerChips = []string{"pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835"}

// headerLine finds "GPIOn" by number on a header chip, for kernels whose device tree leaves the
// header's lines unnamed (mainline's Pi 5 names none of RP1's, so periph.io registers none).
func headerLine(name string) gpio.PinIO {
	var n int
	if _, err := fmt.Sscanf(name, "GPIO%d", &n); err != nil || fmt.Sprintf("GPIO%d", n) != name {
		return nil
	}
	for _, label := range headerChips {
		for _, chip := range gpioioctl.Chips {
			if chip.Label() == label && n < chip.LineCount() {
				if l := chip.ByNumber(n); l != nil {
					return l
				}
			}
		}
	}
	return nil
}

// Pins names the GPIO lines of a real board, as periph.io names them ("GPIO17"; on a header
// chip whose lines have no names, "GPIOn" is line n).
type Pins struct {
	Health, Uplink, Alert, Button string
	ActiveLow                     bool // LEDs wired from 3.3 V to the pin: Low lights them
}

type gpioBoard struct {
	leds   map[string]gpio.PinOut
	button gpio.PinIn
}

// activeLow inverts an LED wired to light on Low.
type activeLow struct{ gpio.PinIO }

func (a activeLow) Out(l gpio.Level) error { return a.PinIO.Out(!l) }

// OpenGPIO opens the pins on the board's GPIO character device (/dev/gpiochipN, the
// gpioioctl driver of periph.io/x/host, the one that works on the Raspberry Pi 4 and 5).
func OpenGPIO(p Pins) (Board, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("hal: load GPIO drivers: %w", err)
	}
	b := &gpioBoard{leds: map[string]gpio.PinOut{}}
	open := func(name string) (gpio.PinIO, error) {
		pin := gpioreg.ByName(name)
		if pin == nil {
			pin = headerLine(name)
		}
		if pin == nil {
			return nil, fmt.Errorf("hal: GPIO pin %q not found (is there a /dev/gpiochip*? known pins: %d)", name, len(gpioreg.All()))
		}
		return pin, nil
	}
	for led, name := range map[string]string{LEDHealth: p.Health, LEDUplink: p.Uplink, LEDAlert: p.Alert} {
		if name == "" {
			continue
		}
		pin, err := open(name)
		if err != nil {
			return nil, err
		}
		var out gpio.PinOut = pin
		if p.ActiveLow {
			out = activeLow{pin}
		}
		if err := out.Out(gpio.Low); err != nil {
			return nil, fmt.Errorf("hal: LED %s on %s: %w", led, name, err)
		}
		b.leds[led] = out
	}
	if p.Button != "" {
		pin, err := open(p.Button)
		if err != nil {
			return nil, err
		}
		if err := pin.In(gpio.PullUp, gpio.NoEdge); err != nil {
			return nil, fmt.Errorf("hal: button on %s: %w", p.Button, err)
		}
		b.button = pin
	}
	return b, nil
}

func (b *gpioBoard) Name() string                { return "gpio" }
func (b *gpioBoard) LED(name string) gpio.PinOut { return b.leds[name] }
func (b *gpioBoard) Button() gpio.PinIn          { return b.button }

// SimBoard is a board made of periph's gpiotest fake pins: its LEDs are read by the status
// page and its button is pressed from the page or the CLI, through the same pins, debounce
// and press logic as a real board.
type SimBoard struct {
	leds   map[string]*gpiotest.Pin
	button *gpiotest.Pin
	mu     sync.Mutex // one press at a time
}

// NewSimBoard returns a simulated board with all LEDs dark and the button released.
func NewSimBoard() *SimBoard {
	s := &SimBoard{leds: map[string]*gpiotest.Pin{}, button: &gpiotest.Pin{N: "SIM_BUTTON", L: gpio.High}}
	for i, n := range LEDNames {
		s.leds[n] = &gpiotest.Pin{N: "SIM_LED_" + n, Num: i, L: gpio.Low}
	}
	return s
}

func (s *SimBoard) Name() string { return "sim" }

// LED returns the fake pin of an LED.
func (s *SimBoard) LED(name string) gpio.PinOut {
	if p, ok := s.leds[name]; ok {
		return p
	}
	return nil
}

// Button returns the fake pin of the button.
func (s *SimBoard) Button() gpio.PinIn { return s.button }

// Lit says whether the LED's pin is driven high now.
func (s *SimBoard) Lit(name string) bool {
	p := s.leds[name]
	return p != nil && p.Read() == gpio.High
}

// ErrBusy means another simulated press is still going on.
var ErrBusy = errors.New("hal: the button is already being pressed")

// Hold presses the simulated button for d (the contact bounces a little, as a real one does),
// then releases it. It returns when the button is released.
func (s *SimBoard) Hold(d time.Duration) error {
	if !s.mu.TryLock() {
		return ErrBusy
	}
	defer s.mu.Unlock()
	bounce := func(final gpio.Level) {
		for i := 0; i < 3; i++ {
			_ = s.button.Out(final)
			time.Sleep(time.Millisecond)
			_ = s.button.Out(!final)
			time.Sleep(time.Millisecond)
		}
		_ = s.button.Out(final)
	}
	bounce(gpio.Low)
	time.Sleep(d)
	bounce(gpio.High)
	return nil
}
