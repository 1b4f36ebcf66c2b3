package netcfg

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// The CLI without a running daemon: the kernel is changed directly, and the saved blocklist
// with it, so that the owner's next start keeps the change (the saved blocklist is what a
// start restores). With a daemon running, the CLI asks the owner instead.

// BlockOffline blocks r.Prefix in the kernel and in the saved blocklist in dir. cfg (nil when
// it cannot be read) gives the protections; the kernel's trusted peer and admin sets are
// checked in any case.
func BlockOffline(fw *Firewall, dir string, cfg *config.Config, r BlockRequest) (Entry, error) {
	p, err := checkPrefix(r.Prefix)
	if err != nil {
		return Entry{}, err
	}
	lim := limits{16, 32}
	var prot []Protection
	if cfg != nil {
		lim = limits{cfg.Blocklist.Widest4, cfg.Blocklist.Widest6}
		prot = Protections(cfg, "/etc/resolv.conf")
	}
	if err := refuse(p, r.Force, prot, lim); err != nil {
		return Entry{}, fmt.Errorf("netcfg: block %w", err)
	}
	if err := fw.Block(p, r.For); err != nil {
		return Entry{}, err
	}
	var e Entry
	err = editSaved(dir, func(b *blocklist) {
		now := time.Now()
		c := Claim{Source: r.Source, By: r.By, Reason: r.Reason, Since: now}
		if r.For > 0 {
			c.Until = now.Add(r.For)
		}
		b.claims[p] = merge(b.claims[p], c)
		e, _ = b.entry(p)
	})
	return e, err
}

// UnblockOffline removes p from the kernel and every claim on it from the saved blocklist.
func UnblockOffline(fw *Firewall, dir string, p netip.Prefix) error {
	p, err := checkPrefix(p)
	if err != nil {
		return err
	}
	kerr := fw.Unblock(p)
	had := false
	if err := editSaved(dir, func(b *blocklist) {
		_, had = b.claims[p]
		delete(b.claims, p)
	}); err != nil {
		return err
	}
	if kerr != nil && !had {
		return kerr
	}
	return nil
}

// SavedBlocklist reads the saved blocklist (for the CLI's listing without a daemon).
func SavedBlocklist(dir string) (*BlockState, error) {
	b, _, err := loadBlocklist(dir, time.Now())
	if err != nil {
		return nil, err
	}
	st := &BlockState{}
	for p := range b.claims {
		e, _ := b.entry(p)
		st.Entries = append(st.Entries, e)
	}
	slices.SortFunc(st.Entries, func(a, b Entry) int { return ComparePrefix(a.Prefix, b.Prefix) })
	for _, name := range sortedKeys(b.feeds) {
		st.Feeds = append(st.Feeds, b.feeds[name].FeedInfo)
	}
	return st, nil
}

func editSaved(dir string, fn func(*blocklist)) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("netcfg: state directory: %w", err)
	}
	b, _, err := loadBlocklist(dir, time.Now())
	if err != nil {
		return err
	}
	fn(b)
	return b.saveClaims(dir)
}
