// Package voicemove moves the office's voice to the modem while the active line's downlink is flooded by traffic the office did not ask for, and back when the flood ends.
package voicemove

import (
	"fmt"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// Settings are [voice.flood]'s thresholds in the detector's units.
type Settings struct {
	Share  float64       // dropped / reference rate above which the line is flooded (0-1)
	Loss   float64       // percent of the calls' packets lost that hurts them
	Jitter time.Duration // the calls' jitter that hurts them
	After  time.Duration // flood and hurt calls this long: move
	Calm   time.Duration // no flood this long: back
}

// SettingsFrom takes the thresholds from the configuration.
func SettingsFrom(f config.VoiceFlood) Settings {
	return Settings{Share: float64(f.Share) / 100, Loss: float64(f.Loss), Jitter: f.Jitter, After: f.After, Calm: f.Calm}
}

// MinFlood is the least dropped rate (bit/s) that makes a flood whatever the share: on an
// idle line, the internet's usual background of scans is a large share of very little.
const MinFlood = 256_000

// Quality is how the calls on a line fare now.
type Quality struct {
	Known  bool          `json:"known"`  // false: nothing measured (no call, no probe)
	Source string        `json:"source"` // "calls" (their RTP) or "probes" (the wan probes, with no call measured)
	Loss   float64       `json:"loss_pct"`
	Jitter time.Duration `json:"jitter_ns"` // the calls' jitter, or the probes' round trip above the line's calm one
}

// Sample is one look at the active line.
type Sample struct {
	At time.Time
	// Dropped is the rate (bit/s) of what the firewall dropped that came in on the line, at
	// least (see dropped's lower bound in sample.go).
	Dropped float64
	// Reference is the line's download rate (bit/s): what it received over the last seconds
	// (a flooded line receives at its rate).
	Reference float64
	Quality   Quality
}

// Flooded says whether the sample's line is flooded under s.
func (s Settings) Flooded(x Sample) bool {
	return x.Dropped >= MinFlood && x.Reference > 0 && x.Dropped >= s.Share*x.Reference
}

// Hurt says whether the calls suffer under s.
func (s Settings) Hurt(q Quality) bool {
	return q.Known && (q.Loss >= s.Loss || q.Jitter >= s.Jitter)
}

// Detector decides when voice moves and when it comes back, with hysteresis: a flood that
// hurts the calls for After moves them; no flood for Calm (doubled for a flapping flood)
// brings them back (the calls' own quality on the flooded line can no longer be seen once
// they have left it). It has no clock and no I/O.
type Detector struct {
	s         Settings
	moved     bool
	badSince  time.Time // flooded and hurt since (zero: not now)
	calmSince time.Time // moved, and no flood since (zero: flooded now)
	why       string
	// A flood that comes back soon after voice did is a flapping one (an attacker toggling
	// it makes every call hiccup at each move): each such return doubles the calm wanted,
	// up to maxFlaps times.
	backAt time.Time
	flaps  int
}

// maxFlaps bounds the doubling of the calm period (10 s becomes at most 5 min 20 s).
const maxFlaps = 5

// Calm is the calm period wanted now.
func (d *Detector) Calm() time.Duration { return d.s.Calm << d.flaps }

// NewDetector starts with voice on the active line.
func NewDetector(s Settings) *Detector { return &Detector{s: s} }

// Set takes new thresholds in place.
func (d *Detector) Set(s Settings) { d.s = s }

// Moved says whether voice is off the active line.
func (d *Detector) Moved() bool { return d.moved }

// Why is the reason of the last change.
func (d *Detector) Why() string { return d.why }

// Step takes one sample and says whether voice should be off the active line, and whether
// that changed with this sample.
func (d *Detector) Step(x Sample) (moved, changed bool) {
	flooded := d.s.Flooded(x)
	if !d.moved {
		if !flooded || !d.s.Hurt(x.Quality) {
			d.badSince = time.Time{}
			return false, false
		}
		if d.badSince.IsZero() {
			d.badSince = x.At
		}
		if x.At.Sub(d.badSince) < d.s.After {
			return false, false
		}
		d.moved, d.badSince, d.calmSince = true, time.Time{}, time.Time{}
		switch {
		case !d.backAt.IsZero() && x.At.Sub(d.backAt) < 2*d.Calm():
			d.flaps = min(d.flaps+1, maxFlaps)
		case d.backAt.IsZero() || x.At.Sub(d.backAt) >= 4*d.Calm():
			d.flaps = 0
		}
		d.why = fmt.Sprintf("%s of unasked traffic dropped at the firewall (%.0f%% of the line's %s); %s",
			bits(x.Dropped), 100*x.Dropped/x.Reference, bits(x.Reference), x.Quality)
		return true, true
	}
	if flooded {
		d.calmSince = time.Time{}
		return true, false
	}
	if d.calmSince.IsZero() {
		d.calmSince = x.At
	}
	if x.At.Sub(d.calmSince) < d.Calm() {
		return true, false
	}
	d.moved, d.calmSince, d.backAt = false, time.Time{}, x.At
	d.why = fmt.Sprintf("the flood ended: no more than %s dropped for %s", bits(x.Dropped), d.Calm())
	return false, true
}

// Reset puts voice back on the active line at once (the line it was moved off is no longer
// the active one, or the modem failed).
func (d *Detector) Reset(why string) {
	d.moved, d.badSince, d.calmSince, d.why = false, time.Time{}, time.Time{}, why
}

func (q Quality) String() string {
	switch {
	case !q.Known:
		return "the calls' quality unknown"
	case q.Source == "probes":
		return fmt.Sprintf("the line's probes (no call measured): loss %.1f%%, round trip up %s", q.Loss, q.Jitter.Round(time.Millisecond))
	}
	return fmt.Sprintf("the calls' loss %.1f%%, jitter %s", q.Loss, q.Jitter.Round(time.Millisecond))
}

// bits prints a rate in bit/s for people.
func bits(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.1f Gbit/s", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", v/1e6)
	}
	return fmt.Sprintf("%.0f kbit/s", v/1e3)
}
