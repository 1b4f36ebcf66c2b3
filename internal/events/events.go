// Package events carries what happens on the box (failover, blocks, button presses) to whoever shows or sends it.
package events

import (
	"sync"
	"time"
)

// Severity says how loudly an event should be told.
type Severity string

// Severities, from routine to needing a person.
const (
	Info  Severity = "info"
	Warn  Severity = "warn"
	Alert Severity = "alert"
)

// Event is one thing that happened, with the figures behind it.
type Event struct {
	Time     time.Time         `json:"time"`
	Kind     string            `json:"kind"` // e.g. "uplink.down", "wan.failover", "sipguard.block"
	Severity Severity          `json:"severity"`
	Source   string            `json:"source"` // the part that saw it: wan, sipguard, hal, web, cli
	Message  string            `json:"message"`
	Fields   map[string]string `json:"fields,omitempty"`
}

// Bus fans events out to subscribers and keeps the most recent ones. Publishing never blocks:
// a subscriber that falls behind loses events (counted in Dropped) rather than stalling the
// part that reports them (a flood must not slow the firewall down).
type Bus struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	recent  []Event
	keep    int
	dropped uint64
}

// New returns a bus that remembers the last keep events.
func New(keep int) *Bus {
	return &Bus{subs: map[chan Event]struct{}{}, keep: keep}
}

// Publish stamps and delivers an event.
func (b *Bus) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Severity == "" {
		e.Severity = Info
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recent = append(b.recent, e)
	if len(b.recent) > b.keep {
		b.recent = append(b.recent[:0:0], b.recent[len(b.recent)-b.keep:]...)
	}
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
			b.dropped++
		}
	}
}

// Subscribe returns a channel of future events and a function that ends the subscription.
func (b *Bus) Subscribe(buffer int) (<-chan Event, func()) {
	ch := make(chan Event, buffer)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, ch)
			b.mu.Unlock()
			close(ch)
		})
	}
}

// Recent returns up to n of the latest events, oldest first.
func (b *Bus) Recent(n int) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = max(0, min(n, len(b.recent))) // a negative n asks for nothing rather than panicking
	return append([]Event(nil), b.recent[len(b.recent)-n:]...)
}

// Dropped counts events that slow subscribers missed.
func (b *Bus) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
