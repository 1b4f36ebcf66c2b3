package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/kernelfeat"
)

// Kernel features: probed once at start; each missing one is one warning line in the log and
// one event (kind "kernel.missing") for the status page, instead of a failure later on.
func init() {
	Register("kernelfeat", func(app *App) (Service, error) {
		s := &kernelFeatures{app: app}
		s.detect()
		app.Control.HandleFunc("GET /kernel-features", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(KernelFeatures())
		})
		return s, nil
	})
}

var (
	kernelMu    sync.RWMutex
	kernelFeats []kernelfeat.Feature
)

// KernelFeatures is what the kernel was found to have at start (nil before the probe ran).
func KernelFeatures() []kernelfeat.Feature {
	kernelMu.RLock()
	defer kernelMu.RUnlock()
	return kernelFeats
}

type kernelFeatures struct{ app *App }

func (s *kernelFeatures) detect() {
	fs := kernelfeat.Detect()
	kernelMu.Lock()
	kernelFeats = fs
	kernelMu.Unlock()
	missing := kernelfeat.Missing(fs)
	for _, f := range missing {
		s.app.Log.Warn(f.Consequence, "feature", f.Name, "probe", f.Detail)
		s.app.Bus.Publish(events.Event{Kind: "kernel.missing", Severity: events.Warn, Source: "kernel",
			Message: f.Consequence, Fields: map[string]string{"feature": f.Name}})
	}
	s.app.Log.Info("kernel features probed", "present", len(fs)-len(missing), "missing", len(missing))
}

// Run has nothing more to do: the kernel does not grow features while it runs.
func (s *kernelFeatures) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
