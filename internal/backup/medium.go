package backup

import (
	"os"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// pruneMedium deletes from the medium (copy 2) the files every destination has pruned:
// each did so only after a newer copy was verified there. With no destination the
// policy is applied to the medium itself.
func (s *Service) pruneMedium(cfg *config.Config) {
	srcs, err := sources(cfg.Backup.Dir)
	if err != nil {
		s.o.Log.Error("backup: prune the medium", "err", err)
		return
	}
	var drop []source
	if len(cfg.Backup.Destinations) == 0 {
		m := &Manifest{}
		for _, src := range srcs {
			m.Entries = append(m.Entries, Entry{Series: src.Series, File: src.File, Made: src.Made})
		}
		for _, i := range (Policy{cfg.Backup.KeepDaily, cfg.Backup.KeepWeekly, cfg.Backup.KeepMonthly}).prunable(m) {
			drop = append(drop, srcs[i])
		}
	} else {
		var ms []*Manifest
		for _, d := range cfg.Backup.Destinations {
			m, err := s.manifest(d.Name)
			if err != nil {
				return
			}
			ms = append(ms, m)
		}
		for _, src := range srcs {
			all := true
			for _, m := range ms {
				all = all && m.pruned(src.File, src.Made)
			}
			if all {
				drop = append(drop, src)
			}
		}
	}
	for _, src := range drop {
		if err := os.Remove(src.Path); err != nil {
			s.o.Log.Error("backup: prune the medium", "err", err)
		}
	}
}

// pruned says whether the source (at its time) was sent and then pruned by retention.
func (m *Manifest) pruned(file string, made time.Time) bool {
	for _, e := range m.Entries {
		if e.File == file && e.Made.Equal(made) {
			return !e.Pruned.IsZero()
		}
	}
	return false
}
