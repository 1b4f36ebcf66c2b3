package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Remove deletes path and syncs its directory, so that after a power cut the file is gone
// for good (a key that was revoked must not come back). A path already gone is no error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: remove %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}
