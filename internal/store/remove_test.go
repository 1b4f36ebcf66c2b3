package store

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRemove(t *testing.T) {
	p := filepath.Join(t.TempDir(), "peer.key")
	if err := WriteFile(p, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("the file is still there: %v", err)
	}
	if err := Remove(p); err != nil {
		t.Errorf("removing what is already gone: %v", err)
	}
	if err := Remove(filepath.Join(p, "under-a-missing-dir")); err == nil {
		t.Error("no error for a directory that does not exist")
	}
}
