package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/notify"
	"github.com/officeedge/appliance/internal/store"
)

// sharedParts are the objects the audit, hal, notify and web services share in one daemon.
type sharedParts struct {
	audit *audit.Log
	panel *hal.Panel
	sim   *hal.SimBoard
	board hal.Board
	hal   *halService
	mail  *notify.Notifier
}

var (
	partsMu    sync.Mutex
	partsByApp = map[*App]*sharedParts{}
)

func partsOf(app *App) *sharedParts {
	partsMu.Lock()
	defer partsMu.Unlock()
	p := partsByApp[app]
	if p == nil {
		cfg := app.Config()
		roles := map[string]string{}
		for _, u := range cfg.Uplink.All() {
			roles[u.Name], roles[u.Interface] = u.Role, u.Role
		}
		p = &sharedParts{
			audit: audit.Open(filepath.Join(app.StateDir, "audit.log")),
			panel: hal.NewPanel(nil, roles, cfg.HAL.AlertBlink),
		}
		partsByApp[app] = p
	}
	return p
}

func init() {
	Register("audit", func(app *App) (Service, error) {
		s := &auditService{app: app, log: partsOf(app).audit}
		app.Control.HandleFunc("GET /audit/export", s.export)
		app.Control.HandleFunc("POST /audit/record", s.recordCLI)
		return s, nil
	})
}

type auditService struct {
	app *App
	log *audit.Log
}

// Run records configuration changes: a reload, and a file changed while the daemon was down.
func (s *auditService) Run(ctx context.Context) error {
	ch, unsub := s.app.Bus.Subscribe(256)
	defer unsub()
	s.configChanged("unknown (changed while the appliance was stopped)")
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-ch:
			if e.Kind == "config.changed" {
				s.configChanged("root (SIGHUP reload)")
			}
		}
	}
}

var secretLine = regexp.MustCompile(`(?i)^(\s*[a-z_]*(password|secret|key)[a-z_]*\s*=\s*).*$`)

// configChanged compares the config file with the copy kept at the last change and records
// the lines that differ (secrets masked).
func (s *auditService) configChanged(who string) {
	snap := filepath.Join(s.app.StateDir, "audit-config.last")
	cur, err := os.ReadFile(s.app.ConfigPath)
	if err != nil {
		return
	}
	prev, err := os.ReadFile(snap)
	if err == nil && string(prev) == string(cur) {
		return
	}
	if err == nil { // the first start has nothing to compare with
		before, after := lineDiff(string(prev), string(cur))
		if rerr := s.log.Record(audit.Entry{Who: who, From: "box", Via: "config", What: "config.changed " + s.app.ConfigPath, Before: before, After: after}); rerr != nil {
			s.app.Log.Error("audit", "err", rerr)
		}
	}
	if err := store.WriteFile(snap, cur, 0o600); err != nil {
		s.app.Log.Error("audit", "err", err)
	}
}

// lineDiff returns the lines only in a and the lines only in b.
func lineDiff(a, b string) (before, after string) {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	var x, y []string
	for _, l := range strings.Split(a, "\n") {
		if cb[l] > 0 {
			cb[l]--
			continue
		}
		x = append(x, secretLine.ReplaceAllString(l, "${1}***"))
	}
	for _, l := range strings.Split(b, "\n") {
		if ca[l] > 0 {
			ca[l]--
			continue
		}
		y = append(y, secretLine.ReplaceAllString(l, "${1}***"))
	}
	return strings.TrimSpace(strings.Join(x, "\n")), strings.TrimSpace(strings.Join(y, "\n"))
}

func (s *auditService) export(w http.ResponseWriter, r *http.Request) {
	es, err := s.log.Entries()
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	_ = audit.WriteCSV(w, es)
}

// recordCLI records an action of the command line (the CLI runs as root on the box, so the
// control socket is the right door: only root reaches it).
func (s *auditService) recordCLI(w http.ResponseWriter, r *http.Request) {
	var e audit.Entry
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&e); err != nil {
		http.Error(w, "audit: bad record: "+err.Error(), 400)
		return
	}
	e.Via = "cli"
	e.Time = time.Time{}
	if e.From == "" {
		e.From = "console"
	}
	if err := s.log.Record(e); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	s.app.Bus.Publish(events.Event{Kind: "cli." + e.What, Source: "cli", Message: fmt.Sprintf("%s by %s: %s", e.What, e.Who, e.After)})
	w.WriteHeader(http.StatusNoContent)
}
