package backup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/wan"
)

// Environment of the runner process: the test binary run again inside the box's
// namespace, so that it can be killed mid-upload like the daemon.
const (
	envConfig = "BACKUP_RUNNER_CONFIG"
	envState  = "BACKUP_RUNNER_STATE"
)

func TestMain(m *testing.M) {
	if os.Getenv(envConfig) != "" {
		if err := runner(os.Getenv(envConfig), os.Getenv(envState)); err != nil {
			fmt.Fprintln(os.Stderr, "runner:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runner runs the backup service as the daemon would: it prints every event as a JSON
// line, runs at once at start and on SIGUSR1, and reads the active uplink from the
// state directory's file "wan-active" (written by the test).
func runner(cfgPath, state string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	bus := events.New(100)
	ch, unsub := bus.Subscribe(100)
	defer unsub()
	go func() {
		for e := range ch {
			b, _ := json.Marshal(e)
			fmt.Printf("EVENT %s\n", b)
		}
	}()
	svc := backup.New(backup.Options{Config: func() *config.Config { return cfg }, StateDir: state, Bus: bus, Alerts: alerts.New(nil),
		Log:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
		BoxFiles: func() []string { return []string{cfgPath} },
		WAN: func() (wan.Status, bool) {
			b, err := os.ReadFile(filepath.Join(state, "wan-active"))
			if err != nil {
				return wan.Status{Active: wan.Primary}, true
			}
			return wan.Status{Active: wan.Role(strings.TrimSpace(string(b)))}, true
		}})
	usr := make(chan os.Signal, 1)
	signal.Notify(usr, syscall.SIGUSR1)
	go func() {
		for range usr {
			svc.Now()
		}
	}()
	svc.Now()
	return svc.Run(ctx)
}

// events parses the runner's output.
func runnerEvents(out string) []events.Event {
	var es []events.Event
	for _, line := range strings.Split(out, "\n") {
		if j, ok := strings.CutPrefix(line, "EVENT "); ok {
			var e events.Event
			if json.Unmarshal([]byte(j), &e) == nil {
				es = append(es, e)
			}
		}
	}
	return es
}
