package voicemove

import (
	"strings"
	"testing"
	"time"
)

var testSettings = Settings{Share: 0.5, Loss: 5, Jitter: 30 * time.Millisecond, After: 3 * time.Second, Calm: 10 * time.Second}

// flood is a line of 4 Mbit/s with rate bit/s dropped and the calls losing loss %.
func flood(at time.Time, rate, loss float64) Sample {
	return Sample{At: at, Dropped: rate, Reference: 4e6, Quality: Quality{Known: true, Source: "calls", Loss: loss}}
}

// A flood that hurts the calls moves them after 3 s; they stay moved while it lasts and come
// back 10 s after it ends, a lull shorter than that changing nothing.
func TestDetectorHysteresis(t *testing.T) {
	d := NewDetector(testSettings)
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration, x Sample, want bool) {
		t.Helper()
		x.At = t0.Add(at)
		if got, _ := d.Step(x); got != want {
			t.Fatalf("at %s (%+v): moved %v, want %v (%s)", at, x, got, want, d.Why())
		}
	}
	for at := time.Duration(0); at < 3*time.Second; at += 500 * time.Millisecond {
		step(at, flood(t0, 3e6, 20), false)
	}
	step(3*time.Second, flood(t0, 3e6, 20), true)
	if !strings.Contains(d.Why(), "3.0 Mbit/s") || !strings.Contains(d.Why(), "75%") || !strings.Contains(d.Why(), "the calls' loss 20.0%") {
		t.Fatalf("why: %s", d.Why())
	}
	// Moved, the calls are fine (they left the line): the flood alone keeps them away.
	step(5*time.Second, flood(t0, 3e6, 0), true)
	// A lull of 9 s, then the flood again: still moved.
	for at := 6 * time.Second; at < 15*time.Second; at += time.Second {
		step(at, flood(t0, 0, 0), true)
	}
	step(15*time.Second, flood(t0, 3e6, 0), true)
	for at := 16 * time.Second; at < 26*time.Second; at += time.Second {
		step(at, flood(t0, 0, 0), true)
	}
	step(26*time.Second, flood(t0, 0, 0), false)
	if !strings.Contains(d.Why(), "flood ended") {
		t.Fatalf("why: %s", d.Why())
	}
}

// The flood alone, the calls' trouble alone, a flood interrupted before 3 s, or a large share
// of very little never move the calls.
func TestDetectorNeedsBoth(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cases := map[string]func(i int) Sample{
		"flood, calls fine":      func(int) Sample { return flood(t0, 3e6, 1) },
		"calls hurt, no flood":   func(int) Sample { return flood(t0, 1e6, 30) },
		"quality unknown":        func(int) Sample { x := flood(t0, 3e6, 0); x.Quality = Quality{}; return x },
		"idle line, scans":       func(int) Sample { x := flood(t0, 100e3, 30); x.Reference = 120e3; return x },
		"interrupted every 2.5s": func(i int) Sample { return flood(t0, map[bool]float64{true: 0, false: 3e6}[i%5 == 4], 30) },
	}
	for name, mk := range cases {
		d := NewDetector(testSettings)
		for i := range 40 {
			x := mk(i)
			x.At = t0.Add(time.Duration(i) * 500 * time.Millisecond)
			if moved, _ := d.Step(x); moved {
				t.Errorf("%s: moved at step %d: %s", name, i, d.Why())
				break
			}
		}
	}
	// Jitter alone hurts too.
	d := NewDetector(testSettings)
	for i := range 8 {
		x := flood(t0, 3e6, 0)
		x.Quality.Jitter = 40 * time.Millisecond
		x.At = t0.Add(time.Duration(i) * 500 * time.Millisecond)
		d.Step(x)
	}
	if !d.Moved() {
		t.Fatal("40 ms of jitter in a flood did not move the calls")
	}
	d.Reset("the modem went down")
	if d.Moved() || d.Why() != "the modem went down" {
		t.Fatalf("after Reset: moved %v, why %q", d.Moved(), d.Why())
	}
}

// A flood that comes back soon after the calls did doubles the calm they wait for; one that
// comes back much later starts afresh.
func TestDetectorFlappingFlood(t *testing.T) {
	d := NewDetector(testSettings)
	t0 := time.Unix(1000, 0)
	at := t0
	run := func(x Sample, until func() bool) time.Duration {
		t.Helper()
		start := at
		for i := 0; i < 2000 && !until(); i++ {
			x.At = at
			d.Step(x)
			at = at.Add(500 * time.Millisecond)
		}
		return at.Sub(start)
	}
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
		run(flood(t0, 3e6, 20), d.Moved)
		if got := run(flood(t0, 0, 0), func() bool { return !d.Moved() }); got < want || got > want+time.Second {
			t.Fatalf("return %d after %s of calm, want %s", i+1, got, want)
		}
	}
	at = at.Add(10 * time.Minute)
	run(flood(t0, 3e6, 20), d.Moved)
	if d.Calm() != 10*time.Second {
		t.Fatalf("calm %s after a quiet 10 minutes, want the base 10s", d.Calm())
	}
}
