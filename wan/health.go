package wan

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// State is an uplink's health.
type State string

// Uplink states. Unknown is before the first answer or loss verdict.
const (
	Unknown  State = "unknown"
	Up       State = "up"
	Degraded State = "degraded"
	Down     State = "down"
)

// usable says whether traffic may be switched to an uplink in this state.
func (s State) usable() bool { return s == Up || s == Degraded }

// Thresholds are the health settings of [wan].
type Thresholds struct {
	DownAfter    int           // lost in a row on every target: down
	UpAfter      int           // answered in a row on one target: back up from down
	LossDegraded int           // percent of the window
	RTTDegraded  time.Duration // median RTT above: slow target
}

// ThresholdsFrom takes the health settings from the configuration.
func ThresholdsFrom(w config.WAN) Thresholds {
	return Thresholds{DownAfter: w.DownAfter, UpAfter: w.UpAfter, LossDegraded: w.LossDegraded, RTTDegraded: w.RTTDegraded}
}

const window = 20 // probes per target kept for loss and RTT figures

// TargetStats are the figures of one target through one uplink.
type TargetStats struct {
	Target     string        `json:"target"`
	Sent       int           `json:"sent"` // in the window
	Lost       int           `json:"lost"` // in the window
	LossPct    int           `json:"loss_pct"`
	RTT        time.Duration `json:"rtt_ns"` // median of the window's answers
	ConsecLost int           `json:"consec_lost"`
	LastOK     time.Time     `json:"last_ok,omitzero"`
	LastError  string        `json:"last_error,omitempty"` // why the last lost probe was lost
	LastRTT    time.Duration `json:"last_rtt_ns"`          // the last answer's (at LastOK): the shaper's autorate follows each one
}

type target struct {
	name       string
	results    []result // ring of the last window results
	consecLost int
	consecOK   int
	lastOK     time.Time
	lastErr    string
	// Probes sent since the last answer: the silence rule needs every live target to have
	// been asked (twice) and to have stayed quiet, not just a gap in its schedule.
	unanswered int
}

// liveFor is how recently a target must have answered to count as live: a dead target (or
// one that stopped answering ICMP) says nothing about the line, so its silence is ignored.
const liveFor = 10 * time.Second

type result struct {
	ok  bool
	rtt time.Duration
}

func (t *target) stats() TargetStats {
	s := TargetStats{Target: t.name, Sent: len(t.results), ConsecLost: t.consecLost, LastOK: t.lastOK, LastError: t.lastErr}
	var rtts []time.Duration
	for _, r := range t.results {
		if r.ok {
			rtts = append(rtts, r.rtt)
			s.LastRTT = r.rtt
		} else {
			s.Lost++
		}
	}
	if s.Sent > 0 {
		s.LossPct = s.Lost * 100 / s.Sent
	}
	if len(rtts) > 0 {
		sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
		s.RTT = rtts[len(rtts)/2]
	}
	return s
}

// Health is the state machine of one uplink: carrier events and probe results in, a state
// with its reason out. It has no clock and no I/O, so tests drive it with a fake clock.
type Health struct {
	th      Thresholds
	carrier bool
	targets []*target
	state   State
	since   time.Time
	reason  string
}

// NewHealth starts an uplink's health with its probe targets' names.
func NewHealth(th Thresholds, targets []string, now time.Time) *Health {
	h := &Health{th: th, carrier: true, state: Unknown, since: now, reason: "no probe answered yet"}
	for _, n := range targets {
		h.targets = append(h.targets, &target{name: n})
	}
	return h
}

// State returns the current state, since when, and why.
func (h *Health) State() (State, time.Time, string) { return h.state, h.since, h.reason }

// Carrier reports the link's carrier; it returns true when the state changed.
func (h *Health) Carrier(up bool, now time.Time) bool {
	if up == h.carrier {
		return false
	}
	h.carrier = up
	if up {
		// Old answers say nothing about the line that just came back: start counting afresh.
		for _, t := range h.targets {
			t.consecOK, t.consecLost = 0, 0
		}
	}
	return h.eval(now)
}

// Result records one probe's outcome for target i; it returns true when the state changed.
func (h *Health) Result(i int, ok bool, rtt time.Duration, now time.Time) bool {
	if i < 0 || i >= len(h.targets) {
		return false
	}
	t := h.targets[i]
	t.results = append(t.results, result{ok, rtt})
	if len(t.results) > window {
		t.results = t.results[len(t.results)-window:]
	}
	if ok {
		t.consecOK++
		t.consecLost = 0
		t.lastOK = now
		t.unanswered = 0
	} else {
		t.consecLost++
		t.consecOK = 0
	}
	return h.eval(now)
}

// Sent notes that a probe went to target i.
func (h *Health) Sent(i int) {
	if i >= 0 && i < len(h.targets) {
		h.targets[i].unanswered++
	}
}

// Heard notes an answer from target i outside the regular schedule (a confirmation probe):
// the line works, but the loss window is left to the regular probes.
func (h *Health) Heard(i int, now time.Time) {
	if i >= 0 && i < len(h.targets) {
		h.targets[i].lastOK, h.targets[i].unanswered = now, 0
	}
}

// LastAnswer is the time of the latest answer from any target.
func (h *Health) LastAnswer() time.Time {
	var last time.Time
	for _, t := range h.targets {
		if t.lastOK.After(last) {
			last = t.lastOK
		}
	}
	return last
}

// Live returns the targets that answered within liveFor.
func (h *Health) Live(now time.Time) []int {
	var live []int
	for i, t := range h.targets {
		if !t.lastOK.IsZero() && now.Sub(t.lastOK) < liveFor {
			live = append(live, i)
		}
	}
	return live
}

// Silent says whether a working line has gone quiet: every live target has had at least two
// probes unanswered, and none has answered for window. Loss of single probes, a dead target
// or one that rate-limits never makes it true while another target still answers.
func (h *Health) Silent(now time.Time, window time.Duration) bool {
	if !h.carrier || !h.state.usable() {
		return false
	}
	live := h.Live(now)
	for _, i := range live {
		t := h.targets[i]
		if t.unanswered < 2 || now.Sub(t.lastOK) < window {
			return false
		}
	}
	return len(live) > 0
}

// LossRatio is the share of regular probes lost over the live targets' windows, for sizing a
// confirmation burst.
func (h *Health) LossRatio(now time.Time) float64 {
	sent, lost := 0, 0
	for _, i := range h.Live(now) {
		s := h.targets[i].stats()
		sent, lost = sent+s.Sent, lost+s.Lost
	}
	if sent == 0 {
		return 0
	}
	return float64(lost) / float64(sent)
}

// SilentDown takes the line down after a failed confirmation; it returns true when the state
// changed. Answers from before the silence no longer count towards coming back.
func (h *Health) SilentDown(reason string, now time.Time) bool {
	for _, t := range h.targets {
		t.consecOK = 0
	}
	return h.set(Down, reason, now)
}

// SetError notes why target i's last probe was lost, for the status.
func (h *Health) SetError(i int, msg string) {
	if i >= 0 && i < len(h.targets) {
		h.targets[i].lastErr = msg
	}
}

// Stats returns every target's figures.
func (h *Health) Stats() []TargetStats {
	out := make([]TargetStats, len(h.targets))
	for i, t := range h.targets {
		out[i] = t.stats()
	}
	return out
}

func (h *Health) set(s State, reason string, now time.Time) bool {
	h.reason = reason
	if s == h.state {
		return false
	}
	h.state, h.since = s, now
	return true
}

func (h *Health) eval(now time.Time) bool {
	if !h.carrier {
		return h.set(Down, "carrier lost", now)
	}
	allLost, anyOK, bestOK := len(h.targets) > 0, false, 0
	for _, t := range h.targets {
		allLost = allLost && t.consecLost >= h.th.DownAfter
		anyOK = anyOK || t.consecOK > 0
		bestOK = max(bestOK, t.consecOK)
	}
	if allLost {
		return h.set(Down, fmt.Sprintf("no answer from any of %d targets: %d or more lost in a row on each", len(h.targets), h.th.DownAfter), now)
	}
	switch h.state {
	case Down:
		// Back only after several answers in a row: a line that is still flapping stays down.
		if bestOK < h.th.UpAfter {
			if !anyOK {
				h.reason = "still no answer"
			}
			return false
		}
		// The losses of the outage say nothing about the line that is back: judge it afresh,
		// or it would count as degraded (and delay the failback) until they age out.
		for _, t := range h.targets {
			// up_after may exceed the window: keep at most what the window holds.
			t.results = t.results[len(t.results)-min(t.consecOK, len(t.results)):]
		}
	case Unknown:
		if !anyOK {
			return false
		}
	}
	var bad []string
	for _, t := range h.targets {
		s := t.stats()
		switch {
		case t.consecLost >= h.th.DownAfter:
			bad = append(bad, fmt.Sprintf("%s not answering (%d lost in a row)", t.name, t.consecLost))
		case s.Sent >= 10 && s.Lost >= 2 && s.LossPct >= h.th.LossDegraded:
			bad = append(bad, fmt.Sprintf("%s loses %d%% (%d of %d)", t.name, s.LossPct, s.Lost, s.Sent))
		case s.Sent-s.Lost >= 3 && s.RTT > h.th.RTTDegraded:
			bad = append(bad, fmt.Sprintf("%s slow: median RTT %s", t.name, s.RTT.Round(time.Millisecond)))
		}
	}
	if len(bad) > 0 {
		return h.set(Degraded, strings.Join(bad, "; "), now)
	}
	return h.set(Up, "all targets answer", now)
}
