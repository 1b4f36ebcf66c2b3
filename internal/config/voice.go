package config

import (
	"net/url"
	"time"

	"github.com/BurntSushi/toml"
)

// Voice is [voice]: voice-first shaping of the uplinks and the calls' measured quality.
type Voice struct {
	// ---- shaping (package shaper; the rates are [uplink.*] upload, upload_min, upload_max) ----

	// SpeedtestURL is the HTTP server `appliance wan speedtest NAME` measures a line against:
	// GET URL for a large body (download), POST URL with a stream of bytes (upload).
	SpeedtestURL string `toml:"speedtest_url"`
	// SpeedtestDuration is how long each direction of a speed test runs (default 10s).
	SpeedtestDuration time.Duration `toml:"speedtest_duration"`

	// ---- call quality (engineer F: calls.go) ----
	Calls CallQuality `toml:"calls"` // calls.go: each call's measured quality

	Flood VoiceFlood `toml:"flood"` // voicemove.go: voice leaves a flooded line
}

func (s *Voice) setDefaults(md *toml.MetaData) {
	if s.SpeedtestDuration == 0 {
		s.SpeedtestDuration = 10 * time.Second
	}
}

func (s *Voice) check(c *Config, v *validator) {
	if s.SpeedtestURL != "" {
		if u, err := url.Parse(s.SpeedtestURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errf(key("voice", "speedtest_url"), "must be an http:// or https:// URL of a speed test server, not %q", s.SpeedtestURL)
		}
	}
	if s.SpeedtestDuration < time.Second || s.SpeedtestDuration > time.Minute {
		v.errf(key("voice", "speedtest_duration"), "must be 1s to 1m, not %s", s.SpeedtestDuration)
	}
	checkShaping(c, v)
}

// checkShaping checks each uplink's shaper rates.
func checkShaping(c *Config, v *validator) {
	for _, u := range c.Uplink.All() {
		k := func(f string) string { return key("uplink", u.Role, f) }
		if !u.Upload.Auto {
			if !u.UploadMin.IsZero() || !u.UploadMax.IsZero() {
				v.errf(k("upload_min"), "upload_min and upload_max are the bounds of upload = \"auto\"; with a fixed upload leave them out")
			}
		} else {
			switch {
			case u.UploadMin.IsZero() || u.UploadMax.IsZero():
				v.errf(k("upload"), "upload = \"auto\" needs upload_min and upload_max (the line's worst and best upload rate, e.g. \"2Mbit\" and \"20Mbit\")")
			case u.UploadMin.Auto || u.UploadMax.Auto:
				v.errf(k("upload_min"), "upload_min and upload_max must be rates like \"2Mbit\", not \"auto\"")
			case u.UploadMin.Bits > u.UploadMax.Bits:
				v.errf(k("upload_min"), "must not be above upload_max (%s > %s)", u.UploadMin, u.UploadMax)
			}
		}
	}
}
