package backup

import (
	"fmt"
	"time"

	"github.com/officeedge/appliance/internal/backup/receive"
	"github.com/officeedge/appliance/internal/config"
)

// Status is what the page, the CLI and /metrics show.
type Status struct {
	Enabled      bool         `json:"enabled"`
	Dir          string       `json:"dir"`
	NextRun      time.Time    `json:"next_run,omitzero"`
	Busy         string       `json:"busy,omitempty"`
	Waiting      string       `json:"waiting,omitempty"`
	Endpoint     string       `json:"endpoint,omitempty"` // where PBXes push, and its host key
	MaxAge       string       `json:"max_age"`
	PBX          []PBXStatus  `json:"pbx"`
	Destinations []DestStatus `json:"destinations"`
}

// PBXStatus is one PBX whose backups the box receives.
type PBXStatus struct {
	Name     string `json:"name"`
	Mode     string `json:"mode"`
	LastPull string `json:"last_pull,omitempty"`
	// Usage is what the PBX keeps on the medium against its quota.
	Usage string `json:"usage,omitempty"`
}

// DestStatus is one destination.
type DestStatus struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Where     string    `json:"where"`
	Copies    int       `json:"copies"`
	Newest    *Entry    `json:"newest,omitempty"`
	AgeS      float64   `json:"age_seconds,omitempty"`
	Stale     bool      `json:"stale"`
	StaleWhy  string    `json:"stale_why,omitempty"`
	Pending   bool      `json:"pending"`
	Attempts  int       `json:"attempts,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// Where says in words where a destination's copies are.
func Where(d config.BackupDest) string {
	if d.Kind == "s3" {
		return "s3://" + d.Endpoint + "/" + d.Bucket + "/" + d.Prefix
	}
	return "sftp://" + d.User + "@" + d.Address + "/" + d.Dir
}

// Status reads the manifests as they are on disk.
func (s *Service) Status() Status {
	st := ReadStatus(s.o.Config(), s.o.StateDir, s.o.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	st.NextRun, st.Busy, st.Waiting, st.Endpoint = s.nextRun, s.busy, s.waiting, s.endpoint
	for i := range st.PBX {
		st.PBX[i].LastPull = s.pulled[st.PBX[i].Name]
	}
	return st
}

// ReadStatus is the status from the config and the manifests alone (the CLI reads it so
// when the daemon is not running).
func ReadStatus(cfg *config.Config, stateDir string, now time.Time) Status {
	b := cfg.Backup
	st := Status{Enabled: b.Enabled(), Dir: b.Dir, MaxAge: b.MaxAge.String()}
	for _, p := range b.PBX {
		ps := PBXStatus{Name: p.Name, Mode: p.Mode}
		if u, err := receive.FolderUsage(receive.PBXDir(b.Dir, p.Name)); err == nil {
			ps.Usage = fmt.Sprintf("%s of %s, %d of %d files", config.Bytes(u.Bytes), p.Quota, u.Files, p.QuotaFiles)
		}
		st.PBX = append(st.PBX, ps)
	}
	for _, d := range b.Destinations {
		ds := DestStatus{Name: d.Name, Kind: d.Kind, Where: Where(d)}
		m, err := LoadManifest(stateDir, d.Name)
		if err != nil {
			ds.LastError = err.Error()
			st.Destinations = append(st.Destinations, ds)
			continue
		}
		ds.Copies = len(m.Present())
		if e, ok := m.Newest(); ok {
			ds.Newest = &e
			ds.AgeS = now.Sub(e.Verified).Seconds()
		}
		ds.Stale, ds.StaleWhy = staleness(m, b.MaxAge, now)
		if ds.Newest == nil && !ds.Stale && ds.StaleWhy == "" {
			ds.StaleWhy = "no verified copy yet"
		}
		ds.Pending, ds.Attempts, ds.NextRetry, ds.LastError = m.Pending, m.Attempts, m.NextRetry, m.LastError
		st.Destinations = append(st.Destinations, ds)
	}
	return st
}

// Manifests are every destination's manifest, by name.
func (s *Service) Manifests() (map[string]*Manifest, error) {
	out := map[string]*Manifest{}
	for _, d := range s.o.Config().Backup.Destinations {
		m, err := LoadManifest(s.o.StateDir, d.Name)
		if err != nil {
			return nil, err
		}
		out[d.Name] = m
	}
	return out, nil
}
