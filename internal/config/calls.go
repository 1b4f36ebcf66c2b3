package config

import (
	"time"

	"github.com/BurntSushi/toml"
)

// CallQuality is [voice.calls]: each call's quality measured passively from its SIP and
// RTP on the LAN (package calls).
type CallQuality struct {
	// Enabled follows the PBX's calls (default true: a PBX is always configured).
	Enabled bool `toml:"enabled"`
	// MaxCalls is how many calls are followed at once (default 200); the memory of each is
	// fixed, so this bounds what a flood of INVITEs can cost.
	MaxCalls int `toml:"max_calls"`
	// MOSAlert: a call whose estimated MOS (1-5) drops below it raises an alert (default 3.5;
	// 0 switches the alert off).
	MOSAlert float64 `toml:"mos_alert"`
	// OneWayAfter: media in one direction only for longer than this after the answer is
	// one-way audio, alerted on (default 2s).
	OneWayAfter time.Duration `toml:"one_way_after"`
}

func (s *CallQuality) setDefaults(md *toml.MetaData) {
	if !md.IsDefined("voice", "calls", "enabled") {
		s.Enabled = true
	}
	if !md.IsDefined("voice", "calls", "max_calls") {
		s.MaxCalls = 200
	}
	if !md.IsDefined("voice", "calls", "mos_alert") {
		s.MOSAlert = 3.5
	}
	if s.OneWayAfter == 0 {
		s.OneWayAfter = 2 * time.Second
	}
}

func (s *CallQuality) check(c *Config, v *validator) {
	if s.MaxCalls < 1 || s.MaxCalls > 10000 {
		v.errf(key("voice", "calls", "max_calls"), "must be 1 to 10000, not %d", s.MaxCalls)
	}
	if s.MOSAlert != 0 && (s.MOSAlert < 1 || s.MOSAlert > 4.5) {
		v.errf(key("voice", "calls", "mos_alert"), "must be 0 (off) or an estimated MOS from 1 to 4.5, not %g", s.MOSAlert)
	}
	if s.OneWayAfter < 500*time.Millisecond || s.OneWayAfter > time.Minute {
		v.errf(key("voice", "calls", "one_way_after"), "must be 500ms to 1m, not %s", s.OneWayAfter)
	}
}
