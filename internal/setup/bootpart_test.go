package setup

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/setupcode"
)

// importDirs is a boot partition, a state directory and a writable config path.
func importDirs(t *testing.T, boot string) ImportOptions {
	t.Helper()
	d := t.TempDir()
	return ImportOptions{Dir: boot, Baked: filepath.Join(d, "baked.toml"), Writable: filepath.Join(d, "perm", "appliance.toml"),
		StateDir: filepath.Join(d, "state"), Log: slog.New(slog.DiscardHandler)}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A config with errors stays on the partition, renamed, with its errors next to it naming
// line and field; a good one becomes the writable config and leaves the partition (and the
// earlier rejection with it); setup-code.txt replaces the box's code.
func TestBootImport(t *testing.T) {
	boot := t.TempDir()
	o := importDirs(t, boot)
	bad := strings.Replace(string(config.Example()), `interface = "eth0"`, `interface = 42`, 1)
	writeFile(t, filepath.Join(boot, BootConfig), bad)
	im, err := Import(o)
	if err != nil || im.Config {
		t.Fatalf("bad config: %+v %v", im, err)
	}
	if _, err := os.Stat(filepath.Join(boot, BootConfig)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the bad config was not renamed")
	}
	if b, err := os.ReadFile(filepath.Join(boot, BootRejected)); err != nil || string(b) != bad {
		t.Fatalf("rejected copy: %v", err)
	}
	errs, _ := os.ReadFile(filepath.Join(boot, BootErrors))
	if !strings.Contains(string(errs), "appliance.toml:17:") || !strings.Contains(string(errs), "lan.interface") {
		t.Fatalf("errors file does not name the line and field:\n%s", errs)
	}
	if len(im.Errors) == 0 || !strings.Contains(im.Errors[0], "lan.interface") {
		t.Fatalf("errors for the page: %q", im.Errors)
	}
	if _, err := os.Stat(o.Writable); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a bad config was taken")
	}

	// The person fixes it, and adds a code of their own.
	writeFile(t, filepath.Join(boot, BootConfig), string(config.Example()))
	writeFile(t, filepath.Join(boot, BootCode), "office-2024\r\nsecond line\n")
	im, err = Import(o)
	if err != nil || !im.Config || !im.Code || len(im.Errors) != 0 {
		t.Fatalf("good config: %+v %v", im, err)
	}
	if b, err := os.ReadFile(o.Writable); err != nil || string(b) != string(config.Example()) {
		t.Fatalf("writable config: %v", err)
	}
	for _, name := range []string{BootConfig, BootRejected, BootErrors} {
		if _, err := os.Stat(filepath.Join(boot, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s is still on the boot partition", name)
		}
	}
	if c, err := setupcode.Load(o.StateDir); err != nil || c != "office-2024" {
		t.Fatalf("code %q %v", c, err)
	}
	if a, _ := os.ReadFile(filepath.Join(o.StateDir, "audit.log")); !strings.Contains(string(a), "boot partition") {
		t.Fatalf("audit: %s", a)
	}

	// A second config replaces the first; the first is kept in the history.
	second := strings.Replace(string(config.Example()), `site = `, `# again`+"\n"+`site = `, 1)
	writeFile(t, filepath.Join(boot, BootConfig), second)
	if _, err := Import(o); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(o.Writable); string(b) != second {
		t.Fatal("the second config was not taken")
	}
	if des, _ := os.ReadDir(o.Writable + ".history"); len(des) != 1 {
		t.Fatalf("history: %v", des)
	}

	// One that lets more of the internet in is taken (whoever holds the card owns the box),
	// but never without a word: the audit says what it opens.
	wider := strings.Replace(second, "allow_sip_from_anywhere = false", "allow_sip_from_anywhere = true", 1)
	if wider == second {
		t.Fatal("the example config has no allow_sip_from_anywhere = false to change")
	}
	writeFile(t, filepath.Join(boot, BootConfig), wider)
	if im, err := Import(o); err != nil || !im.Config {
		t.Fatalf("a widening config: %+v %v", im, err)
	}
	if a, _ := os.ReadFile(filepath.Join(o.StateDir, "audit.log")); !strings.Contains(string(a), "lets more of the internet in") {
		t.Fatalf("the audit does not say the config from the card widens:\n%s", a)
	}

	// Hostile files: too big, a link, a bad code.
	big := make([]byte, config.MaxFileSize+10)
	writeFile(t, filepath.Join(boot, BootConfig), string(big))
	writeFile(t, filepath.Join(boot, BootCode), "ab\n")
	im, err = Import(o)
	if err == nil || !strings.Contains(err.Error(), "setup-code.txt:1") || im.Code {
		t.Fatalf("a bad code: %+v %v", im, err)
	}
	if len(im.Errors) != 1 || !strings.Contains(im.Errors[0], "at most") {
		t.Fatalf("a big file: %q", im.Errors)
	}
	if c, _ := setupcode.Load(o.StateDir); c != "office-2024" {
		t.Fatal("a bad code replaced the good one")
	}
	os.Remove(filepath.Join(boot, BootCode))
	if err := os.Symlink("/etc/passwd", filepath.Join(boot, BootConfig)); err != nil {
		t.Fatal(err)
	}
	if im, err := Import(o); err == nil || im.Config {
		t.Fatalf("a link was followed: %+v %v", im, err)
	}
}
