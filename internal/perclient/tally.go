package perclient

import (
	"log/slog"
	"net/netip"
	"sync"
)

// Tally counts requests turned away, per client, between two reports, in bounded memory:
// a flood becomes one log line a period naming its worst source, never a line a packet.
type Tally struct {
	mu    sync.Mutex
	max   int
	total uint64
	by    map[netip.Addr]uint64
	other uint64 // from clients past max, counted in total only
}

// Summary is what a Tally counted since the last Take.
type Summary struct {
	Total    uint64
	Clients  int // distinct clients seen (at most the Tally's max, plus one for the rest)
	Top      netip.Addr
	TopCount uint64
}

// NewTally remembers up to max clients by address between reports.
func NewTally(max int) *Tally {
	return &Tally{max: max, by: map[netip.Addr]uint64{}}
}

// Add counts one request from a; first says it is the first since the last Take (worth a
// line at once: the summary comes at the end of the period).
func (t *Tally) Add(a netip.Addr) (first bool) {
	a = a.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	first = t.total == 1
	if _, ok := t.by[a]; ok || len(t.by) < t.max {
		t.by[a]++
		return first
	}
	t.other++
	return first
}

// Take returns the counts since the last Take and starts again.
func (t *Tally) Take() Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Summary{Total: t.total, Clients: len(t.by)}
	if t.other > 0 {
		s.Clients++
	}
	for a, n := range t.by {
		if n > s.TopCount {
			s.Top, s.TopCount = a, n
		}
	}
	t.total, t.other = 0, 0
	clear(t.by)
	return s
}

// Log writes one line for s at Warn, unless nothing was counted.
func (s Summary) Log(log *slog.Logger, msg string) {
	if s.Total == 0 {
		return
	}
	log.Warn(msg, "count", s.Total, "clients", s.Clients, "top", s.Top.String(), "top_count", s.TopCount)
}
