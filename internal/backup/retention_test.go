package backup

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// TestBackupRetention: 60 nightly copies keep 7 days, 4 weeks and 6 months (some shared),
// and the newest copy always.
func TestBackupRetention(t *testing.T) {
	start := time.Date(2026, 1, 1, 2, 30, 0, 0, time.UTC)
	m := &Manifest{}
	for i := range 60 {
		made := start.AddDate(0, 0, i)
		m.Entries = append(m.Entries, Entry{Series: "pbx/threecx", File: "f", Made: made, Verified: made})
	}
	m.Entries = append(m.Entries, Entry{Series: "box", Made: start, Verified: start}) // its series' only copy
	p := Policy{Daily: 7, Weekly: 4, Monthly: 6}
	pruned := map[int]bool{}
	for _, i := range p.prunable(m) {
		pruned[i] = true
	}
	if pruned[60] {
		t.Error("the only copy of a series was pruned")
	}
	for i := 53; i < 60; i++ {
		if pruned[i] {
			t.Errorf("day %d of the last 7 pruned", i)
		}
	}
	kept := 61 - len(pruned)
	// 7 days + up to 3 more weekly + the newest of January (Jan 31) + box = 12.
	if kept < 10 || kept > 13 {
		t.Errorf("kept %d copies", kept)
	}
	if pruned[30] { // 31 January: the newest copy of its month
		t.Error("January's monthly copy pruned")
	}
	if !pruned[0] {
		t.Error("the oldest copy kept though newer ones cover all its generations")
	}
}

// TestBackupStaleness: no copy within max age is stale, measured from set-up when there is
// no copy yet.
func TestBackupStaleness(t *testing.T) {
	now := time.Now()
	m := &Manifest{Destination: "s3", Since: now.Add(-time.Hour)}
	if stale, _ := staleness(m, 26*time.Hour, now); stale {
		t.Error("stale an hour after set-up")
	}
	if stale, _ := staleness(m, 30*time.Minute, now); !stale {
		t.Error("not stale with no copy after max age")
	}
	m.Entries = []Entry{{Verified: now.Add(-27 * time.Hour)}}
	if stale, msg := staleness(m, 26*time.Hour, now); !stale || msg == "" {
		t.Error("a 27 h old copy is not stale at 26 h")
	}
	m.Entries = append(m.Entries, Entry{Verified: now.Add(-time.Hour), Pruned: now})
	if stale, _ := staleness(m, 26*time.Hour, now); !stale {
		t.Error("a pruned copy counts as present")
	}
}

// TestBackupPruneMedium: a file leaves the medium only once every destination pruned it.
func TestBackupPruneMedium(t *testing.T) {
	dir := t.TempDir()
	old, kept := filepath.Join(dir, "pbx", "p", "old.zip"), filepath.Join(dir, "pbx", "p", "new.zip")
	for _, p := range []string{old, kept} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srcs, err := sources(dir)
	if err != nil || len(srcs) != 2 {
		t.Fatalf("sources: %v %v", srcs, err)
	}
	cfg := &config.Config{Backup: config.Backup{Dir: dir, KeepDaily: 1, Destinations: []config.BackupDest{{Name: "a"}, {Name: "b"}}}}
	s := New(Options{Config: func() *config.Config { return cfg }, StateDir: dir})
	for _, name := range []string{"a", "b"} {
		m := &Manifest{Destination: name}
		for _, src := range srcs {
			e := Entry{Series: src.Series, File: src.File, Made: src.Made}
			if src.Path == old && name == "a" {
				e.Pruned = time.Now()
			}
			m.Entries = append(m.Entries, e)
		}
		if err := m.save(dir); err != nil {
			t.Fatal(err)
		}
	}
	s.pruneMedium(cfg)
	if _, err := os.Stat(old); err != nil {
		t.Fatal("pruned from the medium while destination b still keeps it")
	}
	m, _ := LoadManifest(dir, "b")
	for i := range m.Entries {
		if m.Entries[i].File == "pbx/p/old.zip" {
			m.Entries[i].Pruned = time.Now()
		}
	}
	_ = m.save(dir)
	s.pruneMedium(cfg)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Error("not pruned from the medium after every destination pruned it")
	}
	if _, err := os.Stat(kept); err != nil {
		t.Error("a kept file left the medium")
	}
}
