package backup

import (
	"errors"
	"fmt"

	"github.com/officeedge/appliance/internal/backup/receive"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// quotaKey is the alert raised while a PBX's folder is full.
func quotaKey(pbx string) string { return "backup.quota." + pbx }

// quotaHit raises the alert for a PBX whose push or pull was refused over its quota; it
// says so once, until the folder has room again.
func (s *Service) quotaHit(pbx string, qe *receive.QuotaError) {
	s.mu.Lock()
	was := s.full[pbx]
	s.full[pbx] = true
	s.mu.Unlock()
	if was {
		return
	}
	msg := fmt.Sprintf("backup: %s; its backups are refused until the medium is pruned or the quota raised ([[backup.pbx]] quota, quota_files)", qe.Error())
	if s.o.Alerts != nil {
		s.o.Alerts.Raise(quotaKey(pbx), "backup", msg)
	}
	s.publish("backup.quota", events.Alert, msg, map[string]string{"pbx": pbx})
}

// asQuota raises the alert when err is a pull stopped over the quota.
func (s *Service) asQuota(pbx string, err error) bool {
	var qe *receive.QuotaError
	if errors.As(err, &qe) {
		s.quotaHit(pbx, qe)
		return true
	}
	return false
}

// checkQuotas clears the alert of each full PBX whose folder is back under 90 % of both
// quotas (after pruning, or a raised quota).
func (s *Service) checkQuotas(cfg *config.Config) {
	s.mu.Lock()
	var full []string
	for pbx, f := range s.full {
		if f {
			full = append(full, pbx)
		}
	}
	s.mu.Unlock()
	for _, name := range full {
		var p *config.BackupPBX
		for i := range cfg.Backup.PBX {
			if cfg.Backup.PBX[i].Name == name {
				p = &cfg.Backup.PBX[i]
			}
		}
		u, err := receive.FolderUsage(receive.PBXDir(cfg.Backup.Dir, name))
		if err != nil {
			continue
		}
		if p == nil || (u.Bytes*10 < int64(p.Quota)*9 && u.Files*10 < p.QuotaFiles*9) {
			s.mu.Lock()
			delete(s.full, name)
			s.mu.Unlock()
			if s.o.Alerts != nil {
				s.o.Alerts.Clear(quotaKey(name))
			}
		}
	}
}
