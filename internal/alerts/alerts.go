// Package alerts holds the alerts that need a person, as typed state: what the page lists, the alert LED shows and the supervisor raises.
package alerts

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Keys that other parts look for. An alert's key names its condition; raising it again
// updates the same alert.
const (
	// KeyHALBoard is raised by the hal part when the GPIO board cannot be opened.
	KeyHALBoard = "hal.board"
	// KeyTollFraud is raised by sipguard for a toll-fraud attempt, alone or followed by "/"
	// and the source ("sipguard.tollfraud/192.0.2.66"); the alert LED stays lit while one is
	// unacknowledged.
	KeyTollFraud = "sipguard.tollfraud"
	// KeySIPSiteUser is raised by sipguard, followed by "/", the site's address, "/" and the
	// extension, when one user behind an address with working phones keeps failing.
	KeySIPSiteUser = "sipguard.siteuser"
)

// IsTollFraud says whether key is a toll-fraud alert's.
func IsTollFraud(key string) bool {
	return key == KeyTollFraud || strings.HasPrefix(key, KeyTollFraud+"/")
}

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
	mu       sync.Mutex
	now      func() time.Time
	alerts   map[string]*Alert
	acked    time.Time // the last Acknowledge
	watchers map[chan struct{}]struct{}
}

// New returns an empty store; now is the clock (nil: time.Now).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, alerts: map[string]*Alert{}, watchers: map[chan struct{}]struct{}{}}
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
	s.pokeLocked()
	s.mu.Unlock()
}

// Clear marks an alert's condition over; it stays listed until acknowledged.
func (s *Store) Clear(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.alerts[key]
	if a == nil || !a.Active {
		return
	}
	a.Active, a.Resolved = false, s.now()
	if a.Acked {
		delete(s.alerts, key)
	}
	s.pokeLocked()
}

// Acknowledge marks every alert as seen; those whose condition is over are forgotten.
func (s *Store) Acknowledge() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, a := range s.alerts {
		a.Acked = true
		if !a.Active {
			delete(s.alerts, k)
		}
	}
	s.acked = s.now()
	s.pokeLocked()
}

// AcknowledgedAt is when alerts were last acknowledged (zero: never since start). What
// happened before it (a block the alert LED blinks for) has been seen by a person.
func (s *Store) AcknowledgedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
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
		if c := b.Last.Compare(a.Last); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
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

// Watch returns a channel that receives a value (never blocking the writer) after each
// change, and a function that ends the watch. Each watcher has its own channel, so the
// page and the LEDs both hear of every change.
func (s *Store) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.watchers, ch)
			s.mu.Unlock()
		})
	}
}

// pokeLocked wakes every watcher; s.mu is held.
func (s *Store) pokeLocked() {
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default: // already woken: one value stands for any number of changes
		}
	}
}
