package store

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, content := range []string{"one", "two"} {
		if err := WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != content {
			t.Fatalf("content %q, want %q", b, content)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestWriteFileFailureKeepsOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory where the temporary file would go that cannot be written: the write fails.
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() == 0 {
		// root ignores directory permissions; make the target a directory instead.
		os.Chmod(dir, 0o700)
		q := filepath.Join(dir, "sub")
		os.Mkdir(q, 0o700)
		os.WriteFile(filepath.Join(q, "x"), nil, 0o600)
		if err := WriteFile(q, []byte("new"), 0o600); err == nil {
			t.Fatal("replacing a non-empty directory must fail")
		}
	} else if err := WriteFile(p, []byte("new"), 0o600); err == nil {
		t.Fatal("write into a read-only directory must fail")
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("content %q after a failed write, want the old one", b)
	}
}

func TestAppend(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	for _, r := range []string{"a\n", "b\n"} {
		if err := Append(p, []byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(p); string(b) != "a\nb\n" {
		t.Fatalf("got %q", b)
	}
}
