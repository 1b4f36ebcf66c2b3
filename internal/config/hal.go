package config

import (
	"time"

	"github.com/BurntSushi/toml"
)

// HAL is [hal]: the box's LEDs and button.
type HAL struct {
	// Board is "sim" (a simulated board shown on the status page, for the lab and
	// development), "gpio" (real pins on the GPIO character device, Raspberry Pi 4/5) or "none".
	Board string `toml:"board"`
	// GPIO line names as periph.io knows them ("GPIO17"); gpio boards only.
	HealthPin string `toml:"health_pin"`
	UplinkPin string `toml:"uplink_pin"`
	AlertPin  string `toml:"alert_pin"`
	ButtonPin string `toml:"button_pin"`
	// LEDsActiveLow: the LEDs light when their pin is low (wired from 3.3 V to the pin).
	LEDsActiveLow bool `toml:"leds_active_low"`
	// LongPress is how long the button must be held to return to automatic and acknowledge.
	LongPress time.Duration `toml:"long_press"`
	// AlertBlink is how long the alert LED blinks after a block.
	AlertBlink time.Duration `toml:"alert_blink"`
}

func (s *HAL) setDefaults(md *toml.MetaData) {
	if s.Board == "" {
		s.Board = "sim"
	}
	if s.LongPress == 0 {
		s.LongPress = 5 * time.Second
	}
	if s.AlertBlink == 0 {
		s.AlertBlink = 10 * time.Minute
	}
}

func (s *HAL) check(c *Config, v *validator) {
	switch s.Board {
	case "sim", "none":
	case "gpio":
		if s.HealthPin == "" && s.UplinkPin == "" && s.AlertPin == "" && s.ButtonPin == "" {
			v.errf(key("hal", "board"), "a gpio board needs its pins: health_pin, uplink_pin, alert_pin, button_pin (like \"GPIO17\")")
		}
		seen := map[string]string{}
		for _, p := range []struct{ field, pin string }{{"health_pin", s.HealthPin}, {"uplink_pin", s.UplinkPin}, {"alert_pin", s.AlertPin}, {"button_pin", s.ButtonPin}} {
			if p.pin == "" {
				continue
			}
			if other, ok := seen[p.pin]; ok {
				v.errf(key("hal", p.field), "pin %q is already used by hal.%s", p.pin, other)
			}
			seen[p.pin] = p.field
		}
	default:
		v.errf(key("hal", "board"), "%q is not a board: use sim, gpio or none", s.Board)
	}
	if s.LongPress < time.Second || s.LongPress > 30*time.Second {
		v.errf(key("hal", "long_press"), "must be between 1s and 30s (it is %s)", s.LongPress)
	}
	if s.AlertBlink < time.Second {
		v.errf(key("hal", "alert_blink"), "must be at least 1s (it is %s)", s.AlertBlink)
	}
}
