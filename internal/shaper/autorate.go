package shaper

import (
	"math"
	"time"
)

// autorate follows a line whose rate changes (LTE, a congested FTTC cabinet), as
// cake-autorate does: the round trips of wan's probes through the line, compared with their
// idle baseline, say whether a queue is growing beyond the box (the modem's, the ISP's); the
// rate comes down at once when it is, and goes up slowly while the line is busy and the
// round trips stay low. The probes are small packets, which the box sends in the interactive
// class: they measure the queue beyond the box, not the box's own.
type autorate struct {
	min, max, rate uint64 // line rate in bit/s; the shaper shapes to 95 % of rate
	targets        map[string]*reflector
	lastDown       time.Time
	lastUp         time.Time
	cutDelta       time.Duration // the queue's delay at the last cut
}

// reflector is what autorate knows of one probe target.
type reflector struct {
	base  time.Duration // the idle round trip
	delta time.Duration // smoothed round trip over base
	at    time.Time     // the last sample's
}

// Sample is a probe target's last round trip through the line, and when it was answered
// (which tells a new sample from one seen before).
type Sample struct {
	RTT time.Duration
	At  time.Time
}

// Autorate's tuning.
const (
	// bloatDelay: round trips this much above their baseline are a queue growing beyond the box.
	bloatDelay = 15 * time.Millisecond
	// downHold lets the queue beyond the box drain after a cut before the next one.
	downHold = 1200 * time.Millisecond
	// episode: cuts closer together than this are one queue's.
	episode  = 5 * time.Second
	upEvery  = 1000 * time.Millisecond
	upFactor = 1.05 // +5 % a second: a few tens of seconds from the floor to the top
	// maxReflectors bounds the targets followed (wan has a handful).
	maxReflectors = 16
	// busyShare: the line is busy (so a low round trip says the rate may go up) when the
	// box sends at least this share of the shaped rate.
	busyShare = 0.75
)

func newAutorate(minBits, maxBits uint64) *autorate {
	return &autorate{min: minBits, max: maxBits, rate: maxBits, targets: map[string]*reflector{}}
}

// step takes the probe targets' last samples and what the box sent in the last interval
// (bit/s), and returns the line rate to shape to.
func (a *autorate) step(now time.Time, samples map[string]Sample, sentBits uint64) uint64 {
	delta, seen := time.Duration(math.MaxInt64), false
	for target, smp := range samples {
		if smp.RTT <= 0 {
			continue
		}
		r := a.targets[target]
		if r == nil {
			if len(a.targets) >= maxReflectors {
				continue
			}
			r = &reflector{base: smp.RTT}
			a.targets[target] = r
		}
		if !smp.At.Equal(r.at) {
			r.at = smp.At
			if smp.RTT < r.base {
				r.base = smp.RTT
			} else {
				// A slow climb: a route change that lengthens the path for good becomes
				// the new baseline in minutes, a queue never does in the seconds it lasts.
				r.base += (smp.RTT - r.base) / 512
			}
			// Half of each new sample: one late answer is not a queue.
			r.delta = (r.delta + smp.RTT - r.base) / 2
		}
		// The least delayed target speaks for the line: one target's own trouble is not
		// the line's.
		delta, seen = min(delta, r.delta), true
	}
	if !seen {
		return a.rate
	}
	shapedNow := float64(shaped(a.rate))
	switch {
	case delta > bloatDelay && now.Sub(a.lastDown) >= downHold && (now.Sub(a.lastDown) >= episode || delta > a.cutDelta*9/10):
		// Within an episode, a queue that is draining since the last cut needs no more.
		factor := 0.9
		if delta > 4*bloatDelay {
			factor = 0.75
		}
		next := float64(a.rate) * factor
		// What got through is the best guess of the line's rate when the queue grows;
		// sentBits is what the box shaped, at most 95 % of its rate.
		if got := float64(sentBits) / ShapedPercent * 100 * 0.9; sentBits > 0 && got < next {
			next = got
		}
		a.rate = clampRate(uint64(next), a.min, a.max)
		a.lastDown, a.lastUp, a.cutDelta = now, now, delta
	case delta < bloatDelay/2 && float64(sentBits) >= busyShare*shapedNow && now.Sub(a.lastUp) >= upEvery && now.Sub(a.lastDown) >= downHold:
		a.rate = clampRate(uint64(float64(a.rate)*upFactor), a.min, a.max)
		a.lastUp = now
	}
	return a.rate
}

func clampRate(r, lo, hi uint64) uint64 { return max(lo, min(hi, r)) }
