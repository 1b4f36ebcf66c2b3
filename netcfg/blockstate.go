package netcfg

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Sources of blocks. Requests from the same source for the same prefix replace each other
// (a person's latest word, a detector's latest verdict); different sources merge, and the
// entry lasts as long as its longest claim.
const (
	SourceManual   = "manual"   // the CLI or the status page; By says who
	SourceSIPGuard = "sipguard" // a detector; Reason says which
	SourceRestore  = "restore"  // an older state file taken over at start
)

// FeedSource is the source of a community list's entries.
func FeedSource(name string) string { return "feed:" + name }

// BlockRequest asks the owner to block a prefix.
type BlockRequest struct {
	Prefix netip.Prefix
	Source string        // SourceManual, SourceSIPGuard, FeedSource(name), ...
	By     string        // who asked: "root (cli)", "admin (web 192.168.50.20)", "scanner"
	Reason string        // shown next to the entry
	For    time.Duration // 0: until unblocked; else at least 1 ms
	Force  bool          // allow a network wider than the configured limit (never a protected one)
}

// Claim is one source's reason for an entry.
type Claim struct {
	Source string    `json:"source"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until,omitzero"` // zero: until unblocked
}

// Permanent reports whether the claim lasts until unblocked.
func (c Claim) Permanent() bool { return c.Until.IsZero() }

// Entry is one blocked address or network with every claim on it.
type Entry struct {
	Prefix netip.Prefix `json:"prefix"`
	Claims []Claim      `json:"claims"`
	Feeds  []string     `json:"feeds,omitempty"` // community lists that list it
}

// Until is when the entry ends: its longest claim (zero: until unblocked). A feed's entry
// lasts while the feed keeps listing it.
func (e Entry) Until() time.Time {
	var u time.Time
	for _, c := range e.Claims {
		if c.Permanent() {
			return time.Time{}
		}
		if c.Until.After(u) {
			u = c.Until
		}
	}
	if len(e.Feeds) > 0 {
		return time.Time{}
	}
	return u
}

// Sources lists who claims the entry, each once, in claim order, then its community lists
// (as FeedSource names).
func (e Entry) Sources() []string {
	out := []string{}
	for _, c := range e.Claims {
		if !slices.Contains(out, c.Source) {
			out = append(out, c.Source)
		}
	}
	for _, f := range e.Feeds {
		out = append(out, FeedSource(f))
	}
	return out
}

// Since is when the entry's oldest claim was made.
func (e Entry) Since() time.Time {
	var s time.Time
	for _, c := range e.Claims {
		if s.IsZero() || c.Since.Before(s) {
			s = c.Since
		}
	}
	return s
}

// Reason is the first claim's reason, or the feed that lists the entry.
func (e Entry) Reason() string {
	for _, c := range e.Claims {
		if c.Reason != "" {
			return c.Reason
		}
	}
	if len(e.Feeds) > 0 {
		return "community list " + e.Feeds[0]
	}
	return ""
}

// FeedInfo is one community list in force.
type FeedInfo struct {
	Name    string    `json:"name"`
	Entries int       `json:"entries"` // in force (protected and too-wide ones left out)
	Refused int       `json:"refused"` // left out at its last load
	Loaded  time.Time `json:"loaded"`
	Until   time.Time `json:"until"` // dropped then unless loaded again
}

// FeedResult says what a feed load did.
type FeedResult struct {
	Entries, Added, Removed int
	Refused                 []error // one per entry left out (protected, too wide)
}

// BlockState is the blocklist as the owner wants it in the kernel, for the CLI, the page,
// metrics and the LEDs. It is a snapshot: never changed after it is published.
type BlockState struct {
	// Entries with a claim other than a feed's (manual, detectors), sorted by address; feed
	// entries are counted in Feeds, and Lookup finds any one of them.
	Entries []Entry    `json:"entries"`
	Feeds   []FeedInfo `json:"feeds"`
	// Kernel counts what is written: addresses and networks in the four block sets.
	Kernel      BlockCounts  `json:"kernel"`
	Protected   []Protection `json:"protected"`
	Widest4     int          `json:"widest4"` // shortest prefix length allowed without force
	Widest6     int          `json:"widest6"`
	Applied     time.Time    `json:"applied,omitzero"` // last successful write of the ruleset
	Repairs     int          `json:"repairs"`          // drift repaired since start
	LastRepair  string       `json:"last_repair,omitempty"`
	LastError   string       `json:"last_error,omitempty"` // the last kernel write that failed ("" once one succeeds)
	Generation  uint32       `json:"generation"`           // nftables generation after our last write
	Checks      int          `json:"checks"`               // generation checks since start
	Rewrites    int          `json:"rewrites"`             // whole blocklist written again since start
	ConfigError string       `json:"config_error,omitempty"`
}

// BlockCounts are element counts.
type BlockCounts struct {
	Addrs4, Addrs6, Nets4, Nets6 int
}

// Total is all the entries written.
func (c BlockCounts) Total() int { return c.Addrs4 + c.Addrs6 + c.Nets4 + c.Nets6 }

// Protection is a network the box depends on and never blocks, with why.
type Protection struct {
	Prefix netip.Prefix `json:"prefix"`
	Why    string       `json:"why"` // "gateway of uplink fttc", "wan probe target", ...
}

// ProtectedError is a refused block of something the box depends on.
type ProtectedError struct {
	Prefix netip.Prefix
	By     Protection
}

func (e *ProtectedError) Error() string {
	return fmt.Sprintf("%s is protected: it overlaps %s (%s), which is never blocked", e.Prefix, e.By.Prefix, e.By.Why)
}

// Is makes errors.Is(err, ErrProtected) true for a ProtectedError.
func (e *ProtectedError) Is(target error) bool { return target == ErrProtected }

// ErrTooWide is a network wider than the configured limit, refused unless forced.
var ErrTooWide = errors.New("is wider than the blocklist allows")

// TooWideError names the limit a refused network is over.
type TooWideError struct {
	Prefix netip.Prefix
	Widest int
}

func (e *TooWideError) Error() string {
	return fmt.Sprintf("%s is wider than /%d, the widest network the blocklist takes without force (it would block %s)", e.Prefix, e.Widest, span(e.Prefix))
}

// Is makes errors.Is(err, ErrTooWide) true.
func (e *TooWideError) Is(target error) bool { return target == ErrTooWide }

func span(p netip.Prefix) string {
	host := p.Addr().BitLen() - p.Bits()
	if host >= 64 {
		return fmt.Sprintf("2^%d addresses", host)
	}
	return fmt.Sprintf("%d addresses", uint64(1)<<host)
}

// Lookup finds the entry for p in a state's non-feed entries (sorted by ComparePrefix).
func (s *BlockState) Lookup(p netip.Prefix) (Entry, bool) {
	i, ok := slices.BinarySearchFunc(s.Entries, p, func(e Entry, p netip.Prefix) int { return ComparePrefix(e.Prefix, p) })
	if !ok {
		return Entry{}, false
	}
	return s.Entries[i], true
}

// ComparePrefix orders prefixes by address, then the wider first: the order of BlockState.Entries.
func ComparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
