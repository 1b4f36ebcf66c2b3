package wan

import (
	"log/slog"
	"testing"

	"github.com/officeedge/appliance/internal/events"
)

// A watcher hears of every event (several coalesced into one wake-up) and nothing after it
// stopped watching; a slow watcher never holds the wan up.
func TestWatch(t *testing.T) {
	s := &Service{log: slog.New(slog.DiscardHandler)}
	ch, stop := s.Watch()
	other, stopOther := s.Watch()
	defer stopOther()
	s.publish(events.Event{Kind: "wan.failover"})
	s.publish(events.Event{Kind: "uplink.down"}) // other is not read: this must not block
	select {
	case <-ch:
	default:
		t.Fatal("no wake-up after an event")
	}
	select {
	case <-ch:
		t.Fatal("two events woke the watcher twice: it should see them as one")
	default:
	}
	stop()
	s.publish(events.Event{Kind: "wan.failback"})
	select {
	case <-ch:
		t.Fatal("a stopped watch still hears")
	default:
	}
	select {
	case <-other:
	default:
		t.Fatal("the other watcher missed the changes")
	}
}
