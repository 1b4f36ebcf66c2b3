package config

import (
	"time"

	"github.com/BurntSushi/toml"
)

// VoiceFlood is [voice.flood]: voice leaves a line whose downlink is flooded (package
// voicemove). Traffic the office did not ask for can fill a line before it reaches the box;
// the box cannot stop it, but it can move the calls to the other uplink until it ends.
type VoiceFlood struct {
	// Move voice (the PBX's SIP and RTP with the trunks, or the relay tunnel) to the backup
	// uplink while the active line is flooded (default true when there is a backup uplink).
	Move bool `toml:"move"`
	// Share is the percentage of what the line received over the last seconds that, dropped
	// at the firewall, makes a flood (default 50).
	Share int `toml:"share"`
	// Loss is the percentage of the calls' packets lost (of the line's probes while no call
	// is measured) that hurts the calls (default 5).
	Loss int `toml:"loss"`
	// Jitter of the calls (the rise of the line's probe round trip while no call is measured)
	// that hurts them (default 30ms).
	Jitter time.Duration `toml:"jitter"`
	// After: a flood that hurts the calls for this long moves them (default 3s).
	After time.Duration `toml:"after"`
	// Calm: no flood for this long brings them back (default 10s).
	Calm time.Duration `toml:"calm"`
}

func (s *VoiceFlood) setDefaults(md *toml.MetaData) {
	if !md.IsDefined("voice", "flood", "move") {
		s.Move = true // switched off below for a box without a backup uplink
	}
	if !md.IsDefined("voice", "flood", "share") {
		s.Share = 50
	}
	if !md.IsDefined("voice", "flood", "loss") {
		s.Loss = 5
	}
	if s.Jitter == 0 {
		s.Jitter = 30 * time.Millisecond
	}
	if s.After == 0 {
		s.After = 3 * time.Second
	}
	if s.Calm == 0 {
		s.Calm = 10 * time.Second
	}
}

func (s *VoiceFlood) check(c *Config, v *validator) {
	k := func(f string) string { return key("voice", "flood", f) }
	if s.Share < 5 || s.Share > 100 {
		v.errf(k("share"), "must be 5 to 100 (percent of what the line receives), not %d", s.Share)
	}
	if s.Loss < 1 || s.Loss > 100 {
		v.errf(k("loss"), "must be 1 to 100 (percent of the calls' packets), not %d", s.Loss)
	}
	if s.Jitter < 5*time.Millisecond || s.Jitter > time.Second {
		v.errf(k("jitter"), "must be 5ms to 1s, not %s", s.Jitter)
	}
	if s.After < time.Second || s.After > time.Minute {
		v.errf(k("after"), "must be 1s to 1m, not %s (a shorter flood is not worth a move)", s.After)
	}
	if s.Calm < 2*time.Second || s.Calm > 10*time.Minute {
		v.errf(k("calm"), "must be 2s to 10m, not %s", s.Calm)
	}
	if c.Uplink.Backup == nil && s.Move {
		if v.md.IsDefined("voice", "flood", "move") {
			c.Warnings = append(c.Warnings, "voice.flood.move is on but there is no backup uplink: voice has nowhere to go")
		}
		s.Move = false
	}
}
