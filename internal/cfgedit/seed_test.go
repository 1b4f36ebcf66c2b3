package cfgedit

import (
	"os"
	"path/filepath"
	"testing"
)

// The writable copy is made from the image's config, keeps the page's edits across
// restarts, and gives way (kept in the history) when a new image brings a new config.
func TestSeed(t *testing.T) {
	dir := t.TempDir()
	baked, writable := filepath.Join(dir, "etc.toml"), filepath.Join(dir, "perm", "appliance.toml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	write(baked, "site = \"v1\"\n")
	if p, err := Seed(baked, writable); err != nil || p != writable || read(writable) != "site = \"v1\"\n" {
		t.Fatalf("first seed: %q %v %q", p, err, read(writable))
	}
	write(writable, "site = \"edited on the page\"\n")
	if _, err := Seed(baked, writable); err != nil || read(writable) != "site = \"edited on the page\"\n" {
		t.Fatalf("a restart lost the page's edit: %v %q", err, read(writable))
	}
	write(baked, "site = \"v2\"\n")
	if _, err := Seed(baked, writable); err != nil || read(writable) != "site = \"v2\"\n" {
		t.Fatalf("a new image's config did not win: %v %q", err, read(writable))
	}
	e, _ := New(Options{Path: writable})
	vs, err := e.History()
	if err != nil || len(vs) != 1 {
		t.Fatalf("history %v %v", vs, err)
	}
	if b, _ := e.Version(vs[0].Name); string(b) != "site = \"edited on the page\"\n" {
		t.Errorf("the page's edit is not in the history: %q", b)
	}
}
