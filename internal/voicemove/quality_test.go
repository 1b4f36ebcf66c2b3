package voicemove

import (
	"testing"
	"time"

	"github.com/officeedge/appliance/wan"
)

// The calls' loss is what they lost since the last figure, not since they began.
func TestCallQuality(t *testing.T) {
	var q callQuality
	t0 := time.Unix(1000, 0)
	c := func(exp, lost uint64) []CallSample {
		return []CallSample{{ID: "a", Expected: exp, Lost: lost, Jitter: 3 * time.Millisecond}}
	}
	// Ten clean minutes, then a second with a fifth lost.
	if got := q.update(c(30000, 0), t0); got.Known {
		t.Fatalf("a figure from the first look: %+v", got)
	}
	if got := q.update(c(30025, 5), t0.Add(500*time.Millisecond)); got.Known {
		t.Fatalf("a figure from 25 packets: %+v", got)
	}
	got := q.update(c(30050, 10), t0.Add(time.Second))
	if !got.Known || got.Source != "calls" || got.Loss != 20 || got.Jitter != 3*time.Millisecond {
		t.Fatalf("quality %+v, want 20%% lost over the last second", got)
	}
	if got := q.update(nil, t0.Add(1500*time.Millisecond)); got.Known {
		t.Fatalf("a figure without calls: %+v", got)
	}
}

// Without calls, the line's probes speak: their loss, and their round trip above the calm one.
func TestProbeQuality(t *testing.T) {
	var p probeQuality
	u := func(rtt time.Duration, loss int) wan.UplinkStatus {
		return wan.UplinkStatus{Targets: []wan.TargetStats{
			{Target: "a", Sent: 20, Lost: loss / 5, LossPct: loss, RTT: rtt},
			{Target: "b", Sent: 20, RTT: rtt + time.Millisecond},
			{Target: "c", Sent: 2, Lost: 2, LossPct: 100}, // too few to say
		}}
	}
	if got := p.update(u(2*time.Millisecond, 0)); !got.Known || got.Loss != 0 || got.Jitter != 0 {
		t.Fatalf("calm line: %+v", got)
	}
	got := p.update(u(80*time.Millisecond, 10))
	if got.Source != "probes" || got.Loss != 10 || got.Jitter != 78*time.Millisecond {
		t.Fatalf("flooded line: %+v, want 10%% loss and 78 ms above the calm round trip", got)
	}
}
