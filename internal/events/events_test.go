package events

import (
	"testing"
	"time"
)

func TestPublishSubscribeRecent(t *testing.T) {
	b := New(3)
	ch, cancel := b.Subscribe(10)
	defer cancel()
	for _, k := range []string{"a", "b", "c", "d"} {
		b.Publish(Event{Kind: k})
	}
	for _, want := range []string{"a", "b", "c", "d"} {
		select {
		case e := <-ch:
			if e.Kind != want || e.Time.IsZero() || e.Severity != Info {
				t.Fatalf("got %+v, want kind %s stamped with time and severity", e, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("event not delivered")
		}
	}
	r := b.Recent(10)
	if len(r) != 3 || r[0].Kind != "b" || r[2].Kind != "d" {
		t.Fatalf("recent = %+v, want b c d", r)
	}
}

func TestSlowSubscriberNeverBlocks(t *testing.T) {
	b := New(10)
	_, cancel := b.Subscribe(1)
	defer cancel()
	for i := 0; i < 1000; i++ {
		b.Publish(Event{Kind: "flood"})
	}
	if b.Dropped() != 999 {
		t.Fatalf("dropped = %d, want 999", b.Dropped())
	}
}

func TestRecentWithNegativeCount(t *testing.T) {
	b := New(3)
	b.Publish(Event{Kind: "a"})
	if r := b.Recent(-1); len(r) != 0 {
		t.Fatalf("Recent(-1) = %+v, want nothing", r)
	}
}
