package sipguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// Entry is sipguard's record of one of its blocks: why, since when, the offense it was and
// where its evidence is. The owner holds the block itself.
type Entry struct {
	Prefix  netip.Prefix `json:"prefix"`
	Reason  string       `json:"reason"`
	Detail  string       `json:"detail,omitempty"`
	Since   time.Time    `json:"since"`
	Expires time.Time    `json:"expires"` // sipguard's claim; listed: the owner's entry (zero: until unblocked)
	Offense int          `json:"offense"` // 1 for a first block; 0: an unproven source's, not counted
	// Proven: the source proved it receives what is sent to its address (Proof says how);
	// only a proven block is shared with the fleet, and only proven ones escalate.
	Proven   bool   `json:"proven"`
	Proof    string `json:"proof,omitempty"`
	Evidence string `json:"evidence,omitempty"`
	Report   string `json:"report,omitempty"`
	// Filled in from the owner when listed.
	Dropped   uint64 `json:"dropped"`
	InKernel  bool   `json:"in_kernel"`
	Remaining string `json:"remaining,omitempty"`
}

type offense struct {
	N    int       `json:"n"`
	Last time.Time `json:"last"`
}

type persisted struct {
	Blocks   map[string]*Entry   `json:"blocks"`
	Offenses map[string]*offense `json:"offenses"`
}

func (g *Guard) statePath() string {
	if g.o.StateDir == "" {
		return ""
	}
	return filepath.Join(g.o.StateDir, "blocks.json")
}

// load reads blocks.json: the records of blocks still running and the offenses.
func (g *Guard) load() error {
	p := g.statePath()
	if p == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(g.o.StateDir, "evidence"), 0o700); err != nil {
		return fmt.Errorf("sipguard: state directory: %w", err)
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sipguard: read blocklist: %w", err)
	}
	var st persisted
	if err := json.Unmarshal(data, &st); err != nil {
		// Keep the bad file for a person to look at; start empty rather than not at all.
		_ = os.Rename(p, p+".bad")
		g.o.Log.Error("sipguard: blocklist file unreadable, kept as .bad", "err", err)
		return nil
	}
	if st.Blocks == nil {
		st.Blocks = map[string]*Entry{}
	}
	if st.Offenses == nil {
		st.Offenses = map[string]*offense{}
	}
	now := time.Now()
	for k, e := range st.Blocks {
		switch {
		case e == nil || !e.Prefix.IsValid() || g.neverBlocked(e.Prefix):
			// An edited file, or a peer trusted since: a trusted peer is never blocked.
			g.o.Log.Warn("sipguard: blocklist record dropped", "key", k)
			delete(st.Blocks, k)
		case !e.Expires.IsZero() && !now.Before(e.Expires):
			delete(st.Blocks, k)
		}
	}
	g.st = st
	g.o.Log.Info("sipguard: block records loaded", "entries", len(st.Blocks), "offenses", len(st.Offenses))
	return nil
}

func (g *Guard) save() {
	p := g.statePath()
	if p == "" {
		return
	}
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	g.smu.Lock()
	data, err := json.MarshalIndent(&g.st, "", " ")
	g.smu.Unlock()
	if err == nil {
		err = store.WriteFile(p, data, 0o600)
	}
	if err != nil {
		g.o.Log.Error("sipguard: save blocklist", "err", err)
	}
}

// ForgetPersisted removes a block from the state file of a Guard that is not running (the
// CLI's unblock without a daemon); it reports whether there was one.
func ForgetPersisted(dir string, p netip.Prefix) (bool, error) {
	path := filepath.Join(dir, "blocks.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var st persisted
	if err := json.Unmarshal(data, &st); err != nil {
		return false, fmt.Errorf("sipguard: %s: %w", path, err)
	}
	k := p.Masked().String()
	if _, ok := st.Blocks[k]; !ok {
		return false, nil
	}
	delete(st.Blocks, k)
	data, err = json.MarshalIndent(&st, "", " ")
	if err != nil {
		return false, err
	}
	return true, store.WriteFile(path, data, 0o600)
}
