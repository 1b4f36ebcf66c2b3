package backup

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/wan"
)

// TestBackupWaitsOffBackupUplink: while wan says the backup uplink carries the office,
// nothing is sent (not even tried), and that is no failure; the work stays pending.
func TestBackupWaitsOffBackupUplink(t *testing.T) {
	dir := t.TempDir()
	id, _ := age.GenerateX25519Identity()
	cfg := &config.Config{Backup: config.Backup{Dir: filepath.Join(dir, "medium"), At: "03:00", MaxAge: time.Hour, KeepDaily: 1,
		RetryMin: time.Hour, RetryMax: time.Hour, Destinations: []config.BackupDest{{Name: "far", Kind: "sftp", Recipient: id.Recipient().String(),
			Address: "192.0.2.99:22", User: "x", KeyFile: "/nonexistent", HostKey: "x"}}}}
	if err := os.MkdirAll(filepath.Join(cfg.Backup.Dir, "pbx", "p"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Backup.Dir, "pbx", "p", "b.zip"), []byte("backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	bus := events.New(10)
	s := New(Options{Config: func() *config.Config { return cfg }, StateDir: dir, Bus: bus,
		WAN: func() (wan.Status, bool) { return wan.Status{Active: wan.Backup}, true }})
	m := s.sync(context.Background(), cfg, cfg.Backup.Destinations[0], &Manifest{Destination: "far"})
	if !m.Pending || m.Attempts != 0 || len(m.Entries) != 0 {
		t.Errorf("manifest %+v: want pending, no attempt, no copy", m)
	}
	if st := s.Status(); st.Waiting == "" {
		t.Error("the status does not say why uploads wait")
	}
	for _, e := range bus.Recent(10) {
		if e.Kind == "backup.failed" {
			t.Errorf("waiting for the primary uplink is reported as a failure: %s", e.Message)
		}
	}
	// Allowed over the backup uplink, it does try (and fails: the key is not there).
	cfg.Backup.OverBackupUplink = true
	m = s.sync(context.Background(), cfg, cfg.Backup.Destinations[0], m)
	if m.Attempts != 1 || m.LastError == "" || m.NextRetry.IsZero() {
		t.Errorf("manifest %+v: want one failed attempt with a retry time", m)
	}
}
