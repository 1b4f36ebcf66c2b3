package shaper

import (
	"testing"
	"time"
)

// autorate comes down at once when the round trips grow over their baseline, never below
// the floor, and goes back up slowly, only while the line is busy and the round trips low.
func TestAutorate(t *testing.T) {
	a := newAutorate(1e6, 10e6)
	now := time.Unix(0, 0)
	rtt := func(d time.Duration) map[string]Sample {
		return map[string]Sample{"icmp:x": {d, now}, "icmp:y": {d + 5*time.Millisecond, now}}
	}
	tick := func(d time.Duration, sent uint64) uint64 {
		now = now.Add(500 * time.Millisecond)
		return a.step(now, rtt(d), sent)
	}
	if r := tick(10*time.Millisecond, 9e6); r != 10e6 {
		t.Fatalf("start: %d, want the top", r)
	}
	// The line falls to 2 Mbit/s: the queue beyond the box grows.
	r := tick(200*time.Millisecond, 9e6)
	if r >= 10e6 {
		t.Fatalf("no cut on a 190 ms queue: %d", r)
	}
	if r2 := tick(200*time.Millisecond, 2e6); r2 != r {
		t.Errorf("cut again before the figures could show the first cut: %d -> %d", r, r2)
	}
	for range 20 {
		r = tick(200*time.Millisecond, 2e6)
	}
	if r > 2.5e6 || r < 1e6 {
		t.Errorf("after seconds of a full queue the rate is %d, want near what got through (2 Mbit/s)", r)
	}
	for range 40 {
		r = tick(500*time.Millisecond, 100e3)
	}
	if r != 1e6 {
		t.Errorf("floor: %d", r)
	}
	// The queue is gone and the line busy: up, slowly.
	before := r
	for range 12 { // 6 s
		r = tick(10*time.Millisecond, uint64(float64(shaped(r))*0.9))
	}
	if r <= before || r > before*13/10 {
		t.Errorf("six quiet busy seconds took the rate from %d to %d, want a few percent up", before, r)
	}
	// Not busy: no reason to go up.
	before = r
	for range 10 {
		r = tick(10*time.Millisecond, 0)
	}
	if r != before {
		t.Errorf("an idle line moved the rate from %d to %d", before, r)
	}
	// No round trips at all (wan off, the line down): the rate stays; nor does a sample
	// seen before count again.
	now = now.Add(time.Second)
	if got := a.step(now, nil, 9e6); got != r {
		t.Errorf("no figures moved the rate to %d", got)
	}
	old := map[string]Sample{"icmp:x": {300 * time.Millisecond, now}}
	first := a.step(now.Add(2*time.Second), old, 0)
	if got := a.step(now.Add(4*time.Second), old, 0); got != first {
		t.Errorf("the same late sample cut twice: %d then %d", first, got)
	}
}

func TestLeafLimit(t *testing.T) {
	for bits, want := range map[uint64]uint32{1e6: 10, 3.8e6: 16, 95e6: 396, 10e9: 2000} {
		if got := leafLimit(bits); got != want {
			t.Errorf("leafLimit(%d) = %d, want %d", bits, got, want)
		}
	}
}
