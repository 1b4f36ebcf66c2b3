package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// The CLI writes times in the config's zone, labelled; with no config that loads, in UTC.
func TestSiteZone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "appliance.toml")
	text := strings.Replace(string(config.Example()), `# timezone = "Europe/Berlin"`, `timezone = "Asia/Tokyo"`, 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC)
	if got := siteZone(path).Stamp(at); got != "2026-03-02 08:30:00 JST" {
		t.Errorf("with timezone = Asia/Tokyo: %q", got)
	}
	if got := siteZone(filepath.Join(t.TempDir(), "missing.toml")).Stamp(at); got != "2026-03-01 23:30:00 UTC" {
		t.Errorf("without a config: %q", got)
	}
}
