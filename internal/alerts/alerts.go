// Package alerts holds the alerts that need a person, as typed state: what the page lists, the alert LED shows and the supervisor raises.
package alerts

import (
	"slices"
	"sync"
	"time"
)

// Alert is one condition that needs a person. Raising the same key again updates it.
type Alert struct {
	Key      string    `json:"key"`    // stable: "part.sipguard", "hal.board", "firewall.drift"
	Source   string    `json:"source"` // the part that raised it
	Message  string    `json:"message"`
	Since    time.Time `json:"since"`
	Last     time.Time `json:"last"`
	Count    int       `json:"count"` // times raised since Since
	Active   bool      `json:"active"`
	Acked    bool      `json:"acked"`
	Resolved time.Time `json:"resolved,omitzero"`
}

// Store keeps the alerts: active ones until cleared, cleared ones until acknowledged.
type Store struct {
	mu      sync.Mutex
	now     func() time.Time
	alerts  map[string]*Alert
	changed chan struct{}
}

// New returns an empty store; now is the clock (nil: time.Now).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, alerts: map[string]*Alert{}, changed: make(chan struct{}, 1)}
}

// Raise sets an alert active (again), unacknowledged.
func (s *Store) Raise(key, source, message string) {
	s.mu.Lock()
	now := s.now()
	a := s.alerts[key]
	if a == nil || !a.Active {
		a = &Alert{Key: key, Since: now}
		s.alerts[key] = a
	}
	a.Source, a.Message, a.Last, a.Active, a.Acked, a.Resolved = source, message, now, true, false, time.Time{}
	a.Count++
	s.mu.Unlock()
	s.poke()
}

// Clear marks an alert's condition over; it stays listed until acknowledged.
func (s *Store) Clear(key string) {
	s.mu.Lock()
	a := s.alerts[key]
	changed := a != nil && a.Active
	if changed {
		a.Active, a.Resolved = false, s.now()
		if a.Acked {
			delete(s.alerts, key)
		}
	}
	s.mu.Unlock()
	if changed {
		s.poke()
	}
}

// Acknowledge marks every alert as seen; those whose condition is over are forgotten.
func (s *Store) Acknowledge() {
	s.mu.Lock()
	for k, a := range s.alerts {
		a.Acked = true
		if !a.Active {
			delete(s.alerts, k)
		}
	}
	s.mu.Unlock()
	s.poke()
}

// List returns the alerts, active first, newest first.
func (s *Store) List() []Alert {
	s.mu.Lock()
	out := make([]Alert, 0, len(s.alerts))
	for _, a := range s.alerts {
		out = append(out, *a)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Alert) int {
		if a.Active != b.Active {
			if a.Active {
				return -1
			}
			return 1
		}
		return b.Last.Compare(a.Last)
	})
	return out
}

// Unacked counts the alerts nobody has acknowledged yet.
func (s *Store) Unacked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.alerts {
		if !a.Acked {
			n++
		}
	}
	return n
}

// Changed receives a value (never blocking the writer) after each change.
func (s *Store) Changed() <-chan struct{} { return s.changed }

func (s *Store) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}
