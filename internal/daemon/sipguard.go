package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/sipguard"
)

// errNoOwner means the firewall owner was not made before a part that sends it blocks.
var errNoOwner = errors.New("daemon: sipguard needs the firewall owner")

// sipGuardService captures SIP, runs the detectors and sends blocks to the owner.
type sipGuardService struct {
	app *App
	g   *sipguard.Guard
}

// newSIPGuardPart makes the sipguard part, or nil when [sipguard] is off.
func newSIPGuardPart(app *App) (*sipGuardService, error) {
	cfg := app.Config()
	if !cfg.SIPGuard.Enabled {
		return nil, nil
	}
	if app.Owner == nil {
		return nil, errNoOwner
	}
	dir := ""
	if app.StateDir != "" {
		dir = filepath.Join(app.StateDir, "sipguard")
	}
	o := sipguard.OptionsFrom(cfg)
	o.Blocker, o.Bus, o.Log, o.StateDir, o.Alerts = app.Owner, app.Bus, app.Log, dir, app.Alerts
	g, err := sipguard.New(o)
	if err != nil {
		return nil, err
	}
	return &sipGuardService{app: app, g: g}, nil
}

// Run captures on every interface and works through findings until ctx ends (nil). A
// capture that fails for another reason than its link going down ends Run with its error,
// for the supervisor to restart the part.
func (s *sipGuardService) Run(ctx context.Context) error {
	ifaces, ports := captureSetup(s.app.Config())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(ifaces))
	for _, ifn := range ifaces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sipguard.Capture(ctx, ifn, ports, s.g); err != nil {
				errs <- err
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.g.Run(ctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	cancel()
	wg.Wait()
	return err
}

// captureSetup lists the interfaces to capture on and the SIP ports to watch.
func captureSetup(cfg *config.Config) (ifaces []string, ports []uint16) {
	ifaces = cfg.SIPGuard.Interfaces
	if len(ifaces) == 0 {
		ifaces = []string{cfg.LAN.Interface}
	}
	if cfg.PBX.SIPPort != 0 {
		ports = append(ports, uint16(cfg.PBX.SIPPort))
	}
	if cfg.PBX.SIPTLSPort != 0 {
		ports = append(ports, uint16(cfg.PBX.SIPTLSPort))
	}
	return ifaces, ports
}

// Reload takes new thresholds; capture interfaces change at the part's next start.
func (s *sipGuardService) Reload(cfg *config.Config) error {
	s.g.SetThresholds(sipguard.ThresholdsFrom(cfg))
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// blocked answers GET /sipguard/blocked: sipguard's blocks with why, evidence and expiry.
func (s *sipGuardService) blocked(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.g.Blocked())
}

// status answers GET /sipguard/status: sipguard's counters.
func (s *sipGuardService) status(w http.ResponseWriter, _ *http.Request) {
	st, n := s.g.Snapshot()
	writeJSON(w, map[string]any{"stats": st, "sources": n})
}

// feedsService loads the community lists into the owner on their schedules.
type feedsService struct {
	app *App
}

// newFeedsPart makes the community-list part, or nil when sipguard is off or lists none.
func newFeedsPart(app *App) (*feedsService, error) {
	cfg := app.Config()
	if !cfg.SIPGuard.Enabled || len(cfg.SIPGuard.Feeds) == 0 {
		return nil, nil
	}
	if app.Owner == nil {
		return nil, errNoOwner
	}
	return &feedsService{app: app}, nil
}

// Run loads each feed of the configuration in force until ctx ends; a feed whose server
// hangs or fails delays only itself, and the owner keeps its last good list meanwhile.
func (s *feedsService) Run(ctx context.Context) error {
	o := sipguard.FeedOptions{Blocker: s.app.Owner, Bus: s.app.Bus, Log: s.app.Log}
	var wg sync.WaitGroup
	for _, f := range s.app.Config().SIPGuard.Feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sipguard.RunFeed(ctx, sipguard.Feed{Name: f.Name, URL: f.URL, File: f.File, Format: f.Format, Interval: f.Interval}, o)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}
