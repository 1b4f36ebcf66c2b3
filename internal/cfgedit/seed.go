package cfgedit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// Seed makes a writable copy of a read-only config (the image bakes the site's config into
// its read-only root; the page's changes must persist on /perm) and returns the copy's
// path, for the daemon to run from. The copy is made from baked when it is missing, and made
// again when baked changed since it was last copied (a new image brings a new config, which
// wins); the copy it replaces is kept in the history, so a change made on the page is never
// lost without a trace.
func Seed(baked, writable string) (string, error) {
	b, err := os.ReadFile(baked)
	if err != nil {
		return "", fmt.Errorf("cfgedit: seed: %w", err)
	}
	sum := sha256.Sum256(b)
	mark := writable + ".seed" // the hash of baked when it was last copied
	want := hex.EncodeToString(sum[:])
	had, merr := os.ReadFile(mark)
	cur, cerr := os.ReadFile(writable)
	if merr == nil && cerr == nil && string(bytes.TrimSpace(had)) == want {
		return writable, nil // the image's config is the one copied: the page's edits stand
	}
	if err := replace(writable, b, cur, cerr); err != nil {
		return "", fmt.Errorf("cfgedit: seed: %w", err)
	}
	if err := store.WriteFile(mark, []byte(want+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cfgedit: seed: %w", err)
	}
	return writable, nil
}

// Import makes data (a config the person dropped on the boot partition, already checked)
// the writable config, as Seed makes the image's: the copy it replaces is kept in the
// history and a change waiting for its confirmation is dropped. It is taken without
// confirm-or-revert: it is the person's deliberate choice. When baked is there (a site
// image), its seed mark is set too, so that Seed does not put the image's config back
// over it at the next start.
func Import(baked, writable string, data []byte) error {
	cur, cerr := os.ReadFile(writable)
	if err := replace(writable, data, cur, cerr); err != nil {
		return fmt.Errorf("cfgedit: import: %w", err)
	}
	if b, err := os.ReadFile(baked); err == nil {
		sum := sha256.Sum256(b)
		if err := store.WriteFile(writable+".seed", []byte(hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
			return fmt.Errorf("cfgedit: import: %w", err)
		}
	}
	return nil
}

// replace writes b as the writable config; cur and cerr are its current text as read.
func replace(writable string, b, cur []byte, cerr error) error {
	if err := os.MkdirAll(filepath.Dir(writable), 0o700); err != nil {
		return err
	}
	if cerr == nil && !bytes.Equal(cur, b) {
		e := &Editor{o: Options{Path: writable, Dir: writable + ".history", Keep: DefaultKeep}}
		if _, err := e.save(cur, time.Now()); err != nil {
			return err
		}
	} else if cerr != nil && !errors.Is(cerr, os.ErrNotExist) {
		return cerr
	}
	// A change still waiting for its confirmation was made to the copy now replaced: putting
	// its earlier version back would undo the new config.
	if err := os.Remove(filepath.Join(writable+".history", pendingFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return store.WriteFile(writable, b, 0o600)
}
