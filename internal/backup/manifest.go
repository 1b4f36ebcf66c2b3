package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// Entry is one copy at a destination. Only a copy read back whole, with the SHA-256 it was
// sent with, is ever written to a manifest: an entry is a verified copy.
type Entry struct {
	Series       string    `json:"series"` // "pbx/NAME" or "box"
	File         string    `json:"file"`   // the source on the medium, relative to backup.dir
	Object       string    `json:"object"` // its name at the destination
	Made         time.Time `json:"made"`   // when the box received the source: what retention orders by
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"` // of the plain file: what a restore checks
	CipherSize   int64     `json:"cipher_size"`
	CipherSHA256 string    `json:"cipher_sha256"` // of the object: what the read-back checks
	Verified     time.Time `json:"verified"`
	// Pruned is when retention deleted the copy (kept so the source is not sent again).
	Pruned time.Time `json:"pruned,omitzero"`
}

// Manifest is what one destination holds, and its retry state: both survive restarts.
type Manifest struct {
	Destination string    `json:"destination"`
	Since       time.Time `json:"since"` // first seen configured: the age of "no copy yet"
	Entries     []Entry   `json:"entries"`
	// Pending says work was started and not finished (a crash or power cut in between):
	// it is taken up again at start.
	Pending   bool      `json:"pending"`
	Attempts  int       `json:"attempts"` // failed attempts in a row
	NextRetry time.Time `json:"next_retry,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// ManifestPath is where the manifest of destination name is kept.
func ManifestPath(stateDir, name string) string {
	return filepath.Join(stateDir, "backup", "manifest-"+name+".json")
}

// LoadManifest reads a destination's manifest; a missing one is empty.
func LoadManifest(stateDir, name string) (*Manifest, error) {
	b, err := os.ReadFile(ManifestPath(stateDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return &Manifest{Destination: name}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup: manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("backup: manifest %s: %w", ManifestPath(stateDir, name), err)
	}
	return &m, nil
}

// save writes the manifest crash-safe.
func (m *Manifest) save(stateDir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	p := ManifestPath(stateDir, m.Destination)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("backup: manifest: %w", err)
	}
	return store.WriteFile(p, b, 0o600)
}

// Present are the copies not pruned, newest first.
func (m *Manifest) Present() []Entry {
	var out []Entry
	for _, e := range m.Entries {
		if e.Pruned.IsZero() {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return b.Verified.Compare(a.Verified) })
	return out
}

// Newest is the newest verified copy, if any.
func (m *Manifest) Newest() (Entry, bool) {
	p := m.Present()
	if len(p) == 0 {
		return Entry{}, false
	}
	return p[0], true
}

// has says whether the source file (at its time) was ever sent.
func (m *Manifest) has(file string, made time.Time) bool {
	for _, e := range m.Entries {
		if e.File == file && e.Made.Equal(made) {
			return true
		}
	}
	return false
}
