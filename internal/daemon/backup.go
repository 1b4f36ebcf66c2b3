package daemon

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/wan"
)

// backupPart is the backups' part: the push endpoint, the schedule and the uploads.
type backupPart struct {
	app *App
	s   *backup.Service
}

// newBackupPart makes the part, or nil when [backup] dir is not set.
func newBackupPart(a *App) (*backupPart, error) {
	if !a.Config().Backup.Enabled() {
		a.Backup.Store(nil)
		return nil, nil
	}
	p := &backupPart{app: a, s: backup.New(backup.Options{
		Config: a.Config, StateDir: a.StateDir, Bus: a.Bus, Alerts: a.Alerts, Log: a.Log.With("part", "backup"),
		WAN: func() (wan.Status, bool) { return wanStatus(a) },
		// The box's own configuration and state: what a new box needs to become this one.
		BoxFiles: func() []string {
			return []string{a.ConfigPath, filepath.Join(a.StateDir, "blocklist.json"), filepath.Join(a.StateDir, "audit.log")}
		},
	})}
	a.Backup.Store(p.s)
	return p, nil
}

func (p *backupPart) Run(ctx context.Context) error { return p.s.Run(ctx) }

// Reload takes the new settings in place: the service reads them at each step.
func (p *backupPart) Reload(*config.Config) error { return nil }

// backupStartKey are the settings the endpoint reads at start: its addresses and port, and
// the medium.
func backupStartKey(c *config.Config) string {
	return fmt.Sprint(c.Backup.Dir, c.Backup.Port, c.LAN.Addresses, c.Backup.PBX)
}

// backupStatus is the backups' status for the page (web.Options.Backups); false when off.
func backupStatus(a *App) (backup.Status, bool) {
	s := a.Backup.Load()
	if s == nil {
		return backup.Status{}, false
	}
	return s.Status(), true
}

// backupRoutes are the control API's backup routes (the CLI's `appliance backup`).
func (a *App) backupRoutes() {
	with := func(h func(s *backup.Service, w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			s := a.Backup.Load()
			if s == nil {
				http.Error(w, "backups are off (set [backup] dir)", http.StatusServiceUnavailable)
				return
			}
			h(s, w, r)
		}
	}
	a.Control.HandleFunc("GET /backup/status", with(func(s *backup.Service, w http.ResponseWriter, r *http.Request) { writeJSON(w, s.Status()) }))
	a.Control.HandleFunc("POST /backup/now", with(func(s *backup.Service, w http.ResponseWriter, r *http.Request) {
		s.Now()
		a.audit(r, "backup.now", "", "")
		writeJSON(w, s.Status())
	}))
	a.Control.HandleFunc("GET /backup/list", with(func(s *backup.Service, w http.ResponseWriter, r *http.Request) {
		ms, err := s.Manifests()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, ms)
	}))
}
