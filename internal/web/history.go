package web

import (
	"sync"
	"time"

	"github.com/officeedge/appliance/wan"
)

// sampleEvery is how often the uplinks' figures are sampled for the page's charts.
const sampleEvery = 5 * time.Second

// historyKeep is how far back the charts go.
const historyKeep = time.Hour

// Sample is one reading of an uplink's health checks.
type Sample struct {
	T    time.Time `json:"t"`
	RTT  float64   `json:"rtt_ms"`
	Loss float64   `json:"loss_pct"`
}

// history keeps an hour of samples per uplink role.
type history struct {
	mu     sync.Mutex
	byRole map[wan.Role][]Sample
}

func newHistory() *history { return &history{byRole: map[wan.Role][]Sample{}} }

// add records a sample; one closer than half a sampling period to the last replaces it
// (a sample taken out of turn), and those older than historyKeep are dropped.
func (h *history) add(r wan.Role, s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.byRole[r]
	if n := len(l); n > 0 && s.T.Sub(l[n-1].T) < sampleEvery/2 {
		l[n-1] = s
	} else {
		l = append(l, s)
	}
	cut := 0
	for cut < len(l) && s.T.Sub(l[cut].T) > historyKeep {
		cut++
	}
	h.byRole[r] = l[cut:]
}

// get returns a copy of a role's samples, oldest first (never nil: the page draws an empty chart).
func (h *history) get(r wan.Role) []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Sample{}, h.byRole[r]...)
}

// figures sums up an uplink's targets: the best round trip (ms) and the mean loss (percent)
// of those probed in the window; ok is false when none was.
func figures(u wan.UplinkStatus) (rtt, loss float64, ok bool) {
	n := 0
	for _, t := range u.Targets {
		if t.Sent == 0 {
			continue
		}
		if r := float64(t.RTT) / float64(time.Millisecond); r > 0 && (rtt == 0 || r < rtt) {
			rtt = r
		}
		loss += float64(t.LossPct)
		n++
	}
	if n == 0 {
		return 0, 0, false
	}
	return rtt, loss / float64(n), true
}

// sample records each uplink's figures now, from the wan's status.
func (s *Server) sample() {
	ws, ok := s.wan()
	if !ok {
		return
	}
	now := s.o.Now()
	for _, u := range ws.Uplinks {
		if rtt, loss, ok := figures(u); ok {
			s.history.add(u.Role, Sample{T: now, RTT: rtt, Loss: loss})
		}
	}
}
