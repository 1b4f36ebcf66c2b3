package daemon

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
)

// A reload that changes [hal] replaces the hal part with a new board; the page, made before,
// presses the new board's button (the old one has nobody reading it any more).
func TestPagePressesTheBoardAfterHALRestart(t *testing.T) {
	prev := labConfig(t, func(s string) string { return s })
	next := labConfig(t, func(s string) string { return strings.Replace(s, "[hal]\n", "[hal]\nlong_press = \"4s\"\n", 1) })
	owner, err := netcfg.NewOwner(netcfg.OwnerOptions{}) // not run: the hal part only watches it
	if err != nil {
		t.Fatal(err)
	}
	app := &App{Options: Options{Log: slog.New(slog.DiscardHandler)}, Bus: events.New(100), Alerts: alerts.New(nil), Owner: owner, cfg: prev}
	ctx, cancel := context.WithCancel(context.Background())
	root := suture.New("test", suture.Spec{})
	done := root.ServeBackground(ctx)
	t.Cleanup(func() { cancel(); <-done })
	app.parts = newParts(app, root)
	for _, s := range specs() {
		if s.name == "hal" {
			app.parts.start(s.name, s.make)
		}
	}
	board := webOptions(app).Board // the page's, made once when it starts
	first := app.HAL.Load()
	if first == nil || board.Name() != "sim" {
		t.Fatalf("hal part %v, page's board %q: want a simulated board", first, board.Name())
	}
	leds := board.Changed()
	app.mu.Lock()
	app.cfg = next
	app.mu.Unlock()
	did := app.parts.reconcile(prev, next)
	if app.HAL.Load() == first || !strings.Contains(strings.Join(did, "; "), "hal restarted") {
		t.Fatalf("the [hal] change did not restart the hal part: %v", did)
	}
	pressed, unsub := app.Bus.Subscribe(100)
	defer unsub()
	if err := board.Press(false); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-pressed:
			if e.Kind != "hal.button.short" {
				continue
			}
		case <-deadline:
			t.Fatal("the page's press never reached the hal part in force")
		}
		break
	}
	if board.Changed() != leds {
		t.Fatal("the page's LED change channel is not the one it asked for at its start")
	}
}
