package wan

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
)

// clock is a fake clock for the state machines.
type clock struct{ t time.Time }

func (c *clock) advance(d time.Duration) time.Time { c.t = c.t.Add(d); return c.t }

var th = Thresholds{DownAfter: 3, UpAfter: 3, LossDegraded: 20, RTTDegraded: 400 * time.Millisecond}

// round feeds one probe result per target, 500 ms apart as with the defaults.
func round(h *Health, c *clock, ok []bool, rtt time.Duration) {
	for i, o := range ok {
		h.Result(i, o, rtt, c.advance(500*time.Millisecond/time.Duration(len(ok))))
	}
}

func state(h *Health) State { s, _, _ := h.State(); return s }

func TestHealthSilentLineDownAfterThreeLostOnEveryTarget(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	h := NewHealth(th, []string{"a", "b", "c"}, c.t)
	for range 5 {
		round(h, c, []bool{true, true, true}, 20*time.Millisecond)
	}
	if state(h) != Up {
		t.Fatalf("state %s, want up", state(h))
	}
	round(h, c, []bool{false, false, false}, 0)
	if state(h) == Down {
		t.Fatal("one lost probe per target took the line down")
	}
	round(h, c, []bool{false, false, false}, 0)
	if state(h) == Down {
		t.Fatal("two lost probes per target took the line down")
	}
	round(h, c, []bool{false, false, false}, 0)
	if st, _, reason := h.State(); st != Down || !strings.Contains(reason, "no answer") {
		t.Fatalf("state %s (%s), want down after three lost on every target", st, reason)
	}
	// Back up only after up_after answers in a row.
	round(h, c, []bool{true, false, false}, 20*time.Millisecond)
	round(h, c, []bool{true, false, false}, 20*time.Millisecond)
	if state(h) != Down {
		t.Fatalf("state %s after two answers, want still down", state(h))
	}
	round(h, c, []bool{true, true, true}, 20*time.Millisecond)
	if st, _, reason := h.State(); st != Up {
		// The outage's losses must not keep a recovered line degraded (and delay failback).
		t.Fatalf("state %s (%s) after three answers in a row, want up", st, reason)
	}
}

func TestHealthOneDeadOrSlowTargetOnlyDegrades(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	h := NewHealth(th, []string{"a", "b"}, c.t)
	for range 20 {
		round(h, c, []bool{true, false}, 20*time.Millisecond)
	}
	if st, _, reason := h.State(); st != Degraded || !strings.Contains(reason, "b not answering") {
		t.Fatalf("state %s (%s), want degraded naming b", st, reason)
	}
	h2 := NewHealth(th, []string{"a", "b"}, c.t)
	for range 10 {
		h2.Result(0, true, 20*time.Millisecond, c.advance(250*time.Millisecond))
		h2.Result(1, true, 900*time.Millisecond, c.advance(250*time.Millisecond))
	}
	if st, _, reason := h2.State(); st != Degraded || !strings.Contains(reason, "slow") {
		t.Fatalf("state %s (%s), want degraded for a slow target", st, reason)
	}
	// Single lost probes now and then (ICMP rate-limiting) never take it down.
	h3 := NewHealth(th, []string{"a", "b"}, c.t)
	for i := range 40 {
		round(h3, c, []bool{i%3 != 0, i%4 != 0}, 20*time.Millisecond)
		if state(h3) == Down {
			t.Fatalf("round %d: down on scattered losses", i)
		}
	}
}

func TestHealthCarrier(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	h := NewHealth(th, []string{"a", "b"}, c.t)
	round(h, c, []bool{true, true}, time.Millisecond)
	if !h.Carrier(false, c.advance(time.Millisecond)) || state(h) != Down {
		t.Fatalf("carrier loss: state %s, want down at once", state(h))
	}
	h.Carrier(true, c.advance(time.Second))
	if state(h) != Down {
		t.Fatal("carrier back: must stay down until probes answer")
	}
	for range 3 {
		round(h, c, []bool{true, true}, time.Millisecond)
	}
	if state(h) != Up {
		t.Fatalf("state %s, want up", state(h))
	}
}

func TestSiteFailoverFailbackHoldDown(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	s := NewSite(60*time.Second, 15*time.Minute, true)
	apply := func(p, b State) *Decision {
		d := s.Decide(p, b, c.t)
		if d != nil {
			s.Switched(d, c.t)
		}
		return d
	}
	if d := apply(Up, Up); d != nil {
		t.Fatalf("switch %+v with both up", d)
	}
	if d := apply(Down, Down); d != nil || !s.BothDown {
		t.Fatalf("both down: decision %+v, both_down %v; never switch to a dead uplink", d, s.BothDown)
	}
	if d := apply(Down, Unknown); d != nil {
		t.Fatalf("switched to an unknown backup: %+v", d)
	}
	if d := apply(Down, Up); d == nil || d.Kind != "failover" || s.Active != Backup {
		t.Fatalf("want failover, got %+v", d)
	}
	// Primary back: failback only after 60 s clean.
	c.advance(time.Second)
	apply(Up, Up)
	c.advance(59 * time.Second)
	if d := apply(Up, Up); d != nil {
		t.Fatalf("failback before the stability period: %+v", d)
	}
	// It relapses: that is a flap, the hold-down doubles.
	c.advance(500 * time.Millisecond)
	apply(Down, Up)
	if s.HoldDown != 2*time.Minute || s.Flaps != 1 {
		t.Fatalf("hold-down %s flaps %d, want 2m 1", s.HoldDown, s.Flaps)
	}
	c.advance(time.Second)
	apply(Up, Up)
	c.advance(119 * time.Second)
	if d := apply(Up, Up); d != nil {
		t.Fatal("failback before the doubled hold-down")
	}
	c.advance(time.Second)
	if d := apply(Up, Up); d == nil || d.Kind != "failback" {
		t.Fatalf("want failback, got %+v", d)
	}
	// Fails again right after the failback: another flap.
	c.advance(10 * time.Second)
	if d := apply(Down, Up); d == nil || d.Kind != "failover" || s.HoldDown != 4*time.Minute {
		t.Fatalf("want failover with hold-down 4m, got %+v, %s", d, s.HoldDown)
	}
	for range 5 {
		s.flap(c.t)
	}
	if s.HoldDown != 15*time.Minute {
		t.Fatalf("hold-down %s, want capped at 15m", s.HoldDown)
	}
	// Backup dies while the primary is merely degraded: go back at once.
	if d := apply(Degraded, Down); d == nil || d.To != Primary {
		t.Fatalf("want switch to the degraded primary, got %+v", d)
	}
	// Stable for hold_down_max in service: the hold-down resets.
	c.advance(time.Second)
	apply(Up, Up)
	s.lastFailback = c.t
	c.advance(15 * time.Minute)
	apply(Up, Up)
	if s.HoldDown != time.Minute || s.Flaps != 0 {
		t.Fatalf("hold-down %s flaps %d after a quiet 15m, want reset", s.HoldDown, s.Flaps)
	}
}

func TestSiteOverride(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	s := NewSite(time.Minute, 15*time.Minute, true)
	s.SetMode(ForceBackup)
	d := s.Decide(Up, Up, c.t)
	if d == nil || d.To != Backup || d.Kind != "override" {
		t.Fatalf("force backup: %+v", d)
	}
	s.Switched(d, c.t)
	if d := s.Decide(Up, Up, c.advance(time.Hour)); d != nil {
		t.Fatalf("forced backup must not fail back: %+v", d)
	}
	if d := s.Decide(Up, Down, c.advance(time.Second)); d == nil || d.To != Primary {
		t.Fatalf("forced backup is dead: want primary, got %+v", d)
	} else {
		s.Switched(d, c.t)
	}
	s.SetMode(ForcePrim)
	if d := s.Decide(Up, Up, c.t); d != nil {
		t.Fatalf("already on primary: %+v", d)
	}
	s.SetMode(ForceBackup)
	if d := s.Decide(Up, Down, c.t); d != nil {
		t.Fatalf("switched to a dead forced uplink: %+v", d)
	}
	s.SetMode(Auto)
	if d := s.Decide(Up, Up, c.t); d != nil {
		t.Fatalf("auto on a healthy primary: %+v", d)
	}
	if _, err := ParseMode("sideways"); err == nil {
		t.Fatal("ParseMode accepted nonsense")
	}
}

func TestStandbyBudget(t *testing.T) {
	c, err := config.Parse("example.toml", config.Example()) // [wan] all defaults
	if err != nil {
		t.Fatal(err)
	}
	mb := float64(MonthlyBytes(c.WAN.ProbeTargets(), c.WAN.StandbyInterval)) / 1e6
	if mb >= 25 {
		t.Fatalf("default standby probing is %.1f MB/month, want under 25", mb)
	}
	t.Logf("standby probing: %.1f MB/month", mb)
}

func TestConfig(t *testing.T) {
	c, err := config.Parse("example.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	w := c.WAN
	if w.Interval != 500*time.Millisecond || w.DownAfter != 3 || w.Stability != time.Minute || w.HoldDownMax != 15*time.Minute {
		t.Fatalf("defaults: %+v", w)
	}
	bad := strings.Replace(string(config.Example()), "\n[wan]\n", "\n[wan]\ntargets = [\"icmp:1.1.1.1\", \"ping:8.8.8.8\"]\ndown_after = 1\nstability = \"10s\"\nhold_down_max = \"5s\"\n", 1)
	_, err = config.Parse("x.toml", []byte(bad))
	for _, want := range []string{"wan.targets", `"ping:8.8.8.8"`, "wan.down_after", "single lost probe", "wan.hold_down_max"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	bad = strings.Replace(string(lab.Config), "networks = [\"192.0.2.10\", \"2001:db8:1::10\"]", "networks = [\"192.0.2.10\"]\noptions = \"trunk.example\"", 1)
	if _, err := config.Parse("x.toml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "sip_peers.trunk.options") {
		t.Errorf("bad options address: %v", err)
	}
}

func TestHealthUpAfterLongerThanTheWindow(t *testing.T) {
	// up_after is not capped by the config: more answers in a row than the window keeps
	// must bring the line back, not crash the daemon.
	long := th
	long.UpAfter = window + 5
	c := &clock{time.Unix(0, 0)}
	h := NewHealth(long, []string{"a"}, c.t)
	for range 3 {
		round(h, c, []bool{false}, 0)
	}
	if state(h) != Down {
		t.Fatalf("state %s, want down", state(h))
	}
	for range long.UpAfter {
		round(h, c, []bool{true}, 20*time.Millisecond)
	}
	if st, _, reason := h.State(); st != Up {
		t.Fatalf("state %s (%s) after %d answers in a row, want up", st, reason, long.UpAfter)
	}
}

func TestForceAfterStopDoesNotHang(t *testing.T) {
	// The button forces through an in-process request without a deadline: once Run has
	// returned, Force must fail instead of waiting forever for a loop that is gone.
	s := &Service{forceCh: make(chan Mode), stopped: make(chan struct{})}
	close(s.stopped)
	done := make(chan error, 1)
	go func() { done <- s.Force(context.Background(), ForceBackup) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Force on a stopped wan part succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Force on a stopped wan part hangs")
	}
}

// fastRound sends one probe to each target and records its outcome 100 ms later.
func fastRound(h *Health, c *clock, ok []bool) {
	for i, o := range ok {
		h.Sent(i)
		h.Result(i, o, time.Millisecond, c.advance(100*time.Millisecond/time.Duration(len(ok))))
	}
}

func TestHealthSilence(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	h := NewHealth(th, []string{"a", "b", "dead"}, c.t)
	// "dead" never answers: it is not live, and its silence says nothing.
	for range 20 {
		fastRound(h, c, []bool{true, true, false})
	}
	if got := h.Live(c.t); len(got) != 2 {
		t.Fatalf("live targets %v, want a and b", got)
	}
	// Every probe to "a" is lost but "b" answers: never silent.
	for range 10 {
		fastRound(h, c, []bool{false, true, false})
		if h.Silent(c.t, 400*time.Millisecond) {
			t.Fatal("silent while a target answers")
		}
	}
	// A gap in the schedule is not silence: each live target must have gone unanswered twice.
	c.advance(time.Second)
	if h.Silent(c.t, 400*time.Millisecond) {
		t.Fatal("silent with no probe sent")
	}
	// The line goes quiet: after two unanswered probes to each live target and the window.
	for i := range 2 {
		h.Sent(0)
		h.Sent(1)
		if i == 0 && h.Silent(c.advance(50*time.Millisecond), 400*time.Millisecond) {
			t.Fatal("silent after one unanswered probe")
		}
	}
	if !h.Silent(c.advance(50*time.Millisecond), 400*time.Millisecond) {
		t.Fatal("not silent: no live target answered for over a second, two probes each unanswered")
	}
	if !h.SilentDown("silent: test", c.t) || state(h) != Down {
		t.Fatalf("state %s after SilentDown", state(h))
	}
	// Answers from before the silence do not bring it back; up_after new ones do.
	fastRound(h, c, []bool{true, false, false})
	if state(h) != Down {
		t.Fatal("one answer after the silence brought the line back")
	}
	fastRound(h, c, []bool{true, false, false})
	fastRound(h, c, []bool{true, false, false})
	if state(h) == Down {
		t.Fatal("three answers in a row did not bring the line back")
	}
}

func TestBurstSize(t *testing.T) {
	for _, tc := range []struct {
		loss       float64
		live, want int
	}{
		{0, 1, 4},    // 2 % assumed: 4 probes lose all with p < 1e-6
		{0.1, 1, 6},  // 10 %: 6
		{0.1, 2, 3},  // spread over two targets
		{0.9, 1, 12}, // capped
		{0.5, 3, 4},
	} {
		if got := burstSize(tc.loss, tc.live); got != tc.want {
			t.Errorf("burstSize(%v, %d) = %d, want %d", tc.loss, tc.live, got, tc.want)
		}
	}
}

func TestRegisterExpiry(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want time.Duration
		ok   bool
	}{
		{"REGISTER sip:x SIP/2.0\r\nContact: <sip:a@b>\r\nExpires: 120\r\n\r\n", 2 * time.Minute, true},
		{"REGISTER sip:x SIP/2.0\r\nContact: <sip:a@b>;Expires=600\r\nExpires: 120\r\n\r\n", 10 * time.Minute, true},
		{"REGISTER sip:x SIP/2.0\r\nm: <sip:a@b>;expires=60\r\n\r\n", time.Minute, true},
		{"REGISTER sip:x SIP/2.0\r\nContact: <sip:a@b>\r\n\r\n", time.Hour, true}, // RFC 3261's default
		{"REGISTER sip:x SIP/2.0\r\nContact: *\r\nExpires: 0\r\n\r\n", 0, false},  // de-registration
		{"OPTIONS sip:x SIP/2.0\r\nExpires: 60\r\n\r\n", 0, false},
	} {
		got, ok := registerExpiry([]byte(tc.msg))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %s %v, want %s %v", tc.msg, got, ok, tc.want, tc.ok)
		}
	}
}

func TestConfigFastProbes(t *testing.T) {
	c, err := config.Parse("example.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	if c.WAN.FastInterval != 100*time.Millisecond || c.WAN.Silence != 400*time.Millisecond {
		t.Fatalf("defaults: fast_interval %s, silence %s", c.WAN.FastInterval, c.WAN.Silence)
	}
	bad := strings.Replace(string(config.Example()), "\n[wan]\n", "\n[wan]\nfast_interval = \"1s\"\nsilence = \"100ms\"\n", 1)
	_, err = config.Parse("x.toml", []byte(bad))
	for _, want := range []string{"wan.fast_interval", "wan.silence", "twice fast_interval"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
