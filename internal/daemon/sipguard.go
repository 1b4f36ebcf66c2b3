package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/sipguard"
)

func init() { Register("sipguard", newSIPGuard) }

type sipGuardService struct {
	app *App
	g   *sipguard.Guard
}

func newSIPGuard(app *App) (Service, error) {
	cfg := app.Config()
	if !cfg.SIPGuard.Enabled {
		return nil, nil
	}
	dir := ""
	if app.StateDir != "" {
		dir = filepath.Join(app.StateDir, "sipguard")
	}
	o := sipguard.Options{
		Thresholds:    sipguard.ThresholdsFrom(cfg),
		Firewall:      app.Firewall,
		ForgetFlows:   sipguard.ForgetFlows(nil),
		Bus:           app.Bus,
		Log:           app.Log,
		StateDir:      dir,
		Protected:     sipguard.ProtectedFrom(cfg),
		BlockTimes:    cfg.SIPGuard.BlockTimes,
		EvidenceAfter: cfg.SIPGuard.EvidenceAfter,
		Site:          cfg.Site,
		TLSPort:       uint16(cfg.PBX.SIPTLSPort),
	}
	if cfg.SIPGuard.AbuseLookup {
		o.Abuse = &sipguard.AbuseLookup{}
	}
	g, err := sipguard.New(o)
	if err != nil {
		return nil, err
	}
	s := &sipGuardService{app: app, g: g}
	app.Control.HandleFunc("GET /sipguard/blocked", s.blocked)
	app.Control.HandleFunc("POST /sipguard/unblock", s.unblock)
	app.Control.HandleFunc("GET /sipguard/status", s.status)
	return s, nil
}

func (s *sipGuardService) Run(ctx context.Context) error {
	cfg := s.app.Config()
	sg := cfg.SIPGuard
	ifaces := sg.Interfaces
	if len(ifaces) == 0 {
		ifaces = []string{cfg.LAN.Interface}
	}
	var ports []uint16
	if cfg.PBX.SIPPort != 0 {
		ports = append(ports, uint16(cfg.PBX.SIPPort))
	}
	if cfg.PBX.SIPTLSPort != 0 {
		ports = append(ports, uint16(cfg.PBX.SIPTLSPort))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(ifaces)+1)
	for _, f := range sg.Feeds {
		wg.Add(1)
		go func(f config.SIPFeed) {
			defer wg.Done()
			s.g.RunFeed(ctx, sipguard.Feed{Name: f.Name, URL: f.URL, File: f.File, Format: f.Format, Interval: f.Interval}, nil)
		}(f)
	}
	for _, ifn := range ifaces {
		wg.Add(1)
		go func(ifn string) {
			defer wg.Done()
			if err := sipguard.Capture(ctx, ifn, ports, s.g); err != nil {
				errs <- err
			}
		}(ifn)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.g.Run(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.forgetUnblocked(ctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		cancel()
	}
	wg.Wait()
	return err
}

// forgetUnblocked makes sipguard forget a source unblocked elsewhere (the status page):
// otherwise the next start would restore the block from sipguard's state.
func (s *sipGuardService) forgetUnblocked(ctx context.Context) {
	ch, unsub := s.app.Bus.Subscribe(64)
	defer unsub()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-ch:
			if e.Kind != "block.manual.unblock" {
				continue
			}
			if p, err := netip.ParsePrefix(e.Fields["addr"]); err == nil {
				_ = s.g.Unblock(p) // already out of the kernel: this clears sipguard's record
			}
		}
	}
}

// Reload takes new thresholds; capture interfaces and feeds change at the next start.
func (s *sipGuardService) Reload(cfg *config.Config) error {
	s.g.SetThresholds(sipguard.ThresholdsFrom(cfg), sipguard.ProtectedFrom(cfg))
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *sipGuardService) blocked(w http.ResponseWriter, _ *http.Request) {
	list, err := s.g.Blocked()
	if err != nil && len(list) == 0 {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, list)
}

func (s *sipGuardService) unblock(w http.ResponseWriter, r *http.Request) {
	var p config.Prefix
	if err := p.UnmarshalText([]byte(r.URL.Query().Get("addr"))); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.g.Unblock(p.Prefix); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "unblocked %s\n", p.Prefix)
}

func (s *sipGuardService) status(w http.ResponseWriter, _ *http.Request) {
	st, n := s.g.Snapshot()
	writeJSON(w, map[string]any{"stats": st, "sources": n})
}
