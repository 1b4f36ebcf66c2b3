package alerts

import (
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// woken says whether a watch channel holds a wake-up, taking it.
func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Raising, clearing and acknowledging follow the documented life of an alert, and every
// watcher hears of each change.
func TestLifecycle(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	s := New(c.now)
	page, stopPage := s.Watch()
	defer stopPage()
	leds, stopLEDs := s.Watch()
	defer stopLEDs()

	s.Raise(KeyHALBoard, "hal", "LEDs and button unavailable: no /dev/gpiochip0")
	c.t = c.t.Add(time.Second)
	s.Raise(KeyHALBoard, "hal", "LEDs and button unavailable: still no chip")
	s.Raise("firewall.drift", "netcfg", "table changed behind our back")
	if !woken(page) || !woken(leds) {
		t.Fatal("a watcher missed a raise")
	}
	l := s.List()
	if len(l) != 2 || s.Unacked() != 2 {
		t.Fatalf("after three raises of two keys: %+v, unacked %d", l, s.Unacked())
	}
	var board Alert
	for _, a := range l {
		if a.Key == KeyHALBoard {
			board = a
		}
	}
	if board.Count != 2 || board.Message != "LEDs and button unavailable: still no chip" || !board.Since.Before(board.Last) || !board.Active {
		t.Errorf("raised twice: %+v, want count 2, the newest message, since the first", board)
	}

	// A cleared alert stays listed until acknowledged; an active one stays after it.
	s.Clear("firewall.drift")
	if l := s.List(); len(l) != 2 || !l[0].Active || l[1].Active || l[1].Resolved.IsZero() {
		t.Errorf("after clear: %+v, want the active one first and the cleared one resolved", l)
	}
	c.t = c.t.Add(time.Minute)
	s.Acknowledge()
	if l := s.List(); len(l) != 1 || l[0].Key != KeyHALBoard || !l[0].Acked || s.Unacked() != 0 {
		t.Errorf("after acknowledge: %+v unacked %d, want only the active board alert, acknowledged", l, s.Unacked())
	}
	if !s.AcknowledgedAt().Equal(c.t) {
		t.Errorf("acknowledged at %v, want %v", s.AcknowledgedAt(), c.t)
	}
	// Raised again after it was acknowledged: unacknowledged again, same episode.
	s.Raise(KeyHALBoard, "hal", "again")
	if l := s.List(); l[0].Acked || l[0].Count != 3 || s.Unacked() != 1 {
		t.Errorf("raised after acknowledge: %+v", l[0])
	}
	// Cleared after it was acknowledged... and raised: a new episode.
	s.Acknowledge()
	s.Clear(KeyHALBoard)
	if len(s.List()) != 0 {
		t.Errorf("an acknowledged alert cleared stays listed: %+v", s.List())
	}
	s.Raise(KeyHALBoard, "hal", "new")
	if l := s.List(); l[0].Count != 1 || !l[0].Since.Equal(c.t) {
		t.Errorf("a new episode: %+v, want count 1", l[0])
	}

	// A stopped watch hears nothing more; clearing what is not active is no change.
	woken(page)
	woken(leds)
	stopPage()
	s.Clear("no such alert")
	if woken(leds) {
		t.Error("clearing an unknown alert woke a watcher")
	}
	s.Raise("x", "y", "z")
	if woken(page) || !woken(leds) {
		t.Error("a stopped watch was woken, or a live one was not")
	}
}

func TestIsTollFraud(t *testing.T) {
	for key, want := range map[string]bool{KeyTollFraud: true, KeyTollFraud + "/192.0.2.66": true, "sipguard.tollfraudx": false, KeyHALBoard: false} {
		if IsTollFraud(key) != want {
			t.Errorf("IsTollFraud(%q) = %v", key, !want)
		}
	}
}
