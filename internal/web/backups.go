package web

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/config"
)

var (
	mBackupVerified = prometheus.NewDesc("appliance_backup_newest_verified_timestamp_seconds", "When each destination's newest verified copy was verified.", []string{"destination"}, nil)
	mBackupBytes    = prometheus.NewDesc("appliance_backup_newest_verified_bytes", "Size of each destination's newest verified copy.", []string{"destination"}, nil)
	mBackupCopies   = prometheus.NewDesc("appliance_backup_copies", "Verified copies kept at each destination.", []string{"destination"}, nil)
	mBackupStale    = prometheus.NewDesc("appliance_backup_stale", "1 while a destination's newest verified copy is older than backup.max_age.", []string{"destination"}, nil)
	mBackupFailures = prometheus.NewDesc("appliance_backup_failed_attempts", "Failed upload attempts in a row at each destination.", []string{"destination"}, nil)
)

// backupDescs are the backups' metrics, for Describe.
var backupDescs = []*prometheus.Desc{mBackupVerified, mBackupBytes, mBackupCopies, mBackupStale, mBackupFailures}

// backups is the backups' status, or false when backups are off or not wired in.
func (s *Server) backups() (backup.Status, bool) {
	if s.o.Backups == nil {
		return backup.Status{}, false
	}
	return s.o.Backups()
}

// collectBackups adds the backups' metrics.
func (s *Server) collectBackups(g metric) {
	st, ok := s.backups()
	if !ok {
		return
	}
	for _, d := range st.Destinations {
		if d.Newest != nil {
			g(mBackupVerified, float64(d.Newest.Verified.Unix()), d.Name)
			g(mBackupBytes, float64(d.Newest.Size), d.Name)
		}
		g(mBackupCopies, float64(d.Copies), d.Name)
		g(mBackupStale, boolGauge[d.Stale], d.Name)
		g(mBackupFailures, float64(d.Attempts), d.Name)
	}
}

// handleBackups serves the Backups panel's data.
func (s *Server) handleBackups(w http.ResponseWriter, r *http.Request) {
	st, ok := s.backups()
	if !ok {
		st = backup.Status{Enabled: false}
	}
	writeJSON(w, http.StatusOK, st)
}

// backupCheck is the checklist's "Backups configured and recent": it fails when a
// destination's newest verified copy is older than backup.max_age (default 26h).
func (s *Server) backupCheck(cfg *config.Config, add func(id, title string, ok bool, detail, fix string)) {
	const id, title = "backups", "Backups configured and recent"
	st, ok := s.backups()
	switch {
	case !cfg.Backup.Enabled():
		add(id, title, false, "no backups are configured: the PBX's own disk is its only copy",
			"Set [backup] dir (a USB disk), add the PBX under [[backup.pbx]] and an off-site [[backup.destination]].")
		return
	case len(cfg.Backup.Destinations) == 0:
		add(id, title, false, "no off-site destination: every copy is in the office", "Add a [[backup.destination]] (S3 or SFTP) with its own age key.")
		return
	case !ok:
		add(id, title, false, "the backup part is not running", "See the event log and the alerts for why.")
		return
	}
	var bad, good []string
	for _, d := range st.Destinations {
		switch {
		case d.Newest == nil:
			bad = append(bad, d.Name+": no verified copy yet")
		case d.Stale:
			bad = append(bad, fmt.Sprintf("%s: newest verified copy is %s old", d.Name, time.Duration(d.AgeS*float64(time.Second)).Round(time.Minute)))
		default:
			good = append(good, fmt.Sprintf("%s %s ago", d.Name, time.Duration(d.AgeS*float64(time.Second)).Round(time.Minute)))
		}
	}
	if len(bad) > 0 {
		add(id, title, false, strings.Join(bad, "; ")+" (max age "+cfg.Backup.MaxAge.String()+")",
			"See the Backups panel for the last error; fix it and run `appliance backup now`.")
		return
	}
	add(id, title, true, "newest verified copies: "+strings.Join(good, ", "), "")
}
