package netcfg

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// blocklist is the desired blocklist: claims by prefix (manual, detectors) and the feeds'
// lists. Only the owner's goroutine touches it.
type blocklist struct {
	claims map[netip.Prefix][]Claim
	feeds  map[string]*feedList
	// changed lists the prefixes whose entry may differ from the last snapshot, and all says
	// any may (a feed changed, or the list was loaded): the snapshot is patched, not rebuilt,
	// so one block among 100k entries costs a copy, not a sort.
	changed map[netip.Prefix]struct{}
	all     bool
}

// set replaces p's claims (none: p has no claim left) and marks p changed.
func (b *blocklist) set(p netip.Prefix, cs []Claim) {
	if len(cs) == 0 {
		delete(b.claims, p)
	} else {
		b.claims[p] = cs
	}
	if b.changed == nil {
		b.changed = map[netip.Prefix]struct{}{}
	}
	b.changed[p] = struct{}{}
}

// entries is the sorted list of entries with a claim, made from prev (the last snapshot's)
// and the changes since.
func (b *blocklist) entries(prev []Entry) []Entry {
	defer func() { b.changed, b.all = nil, false }()
	if !b.all && len(b.changed) == 0 {
		return prev
	}
	if b.all || len(b.changed) > len(prev)/8+256 {
		out := make([]Entry, 0, len(b.claims))
		for p := range b.claims {
			e, _ := b.entry(p)
			out = append(out, e)
		}
		slices.SortFunc(out, func(x, y Entry) int { return ComparePrefix(x.Prefix, y.Prefix) })
		return out
	}
	ps := make([]netip.Prefix, 0, len(b.changed))
	for p := range b.changed {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, ComparePrefix)
	out := make([]Entry, 0, len(prev)+len(ps))
	i := 0
	for _, p := range ps {
		for i < len(prev) && ComparePrefix(prev[i].Prefix, p) < 0 {
			out = append(out, prev[i])
			i++
		}
		if i < len(prev) && prev[i].Prefix == p {
			i++ // replaced below, or gone
		}
		if len(b.claims[p]) > 0 {
			e, _ := b.entry(p)
			out = append(out, e)
		}
	}
	return append(out, prev[i:]...)
}

// feedList is one community list: sorted, masked, unique prefixes.
type feedList struct {
	FeedInfo
	list []netip.Prefix
}

func (f *feedList) has(p netip.Prefix) bool {
	_, ok := slices.BinarySearchFunc(f.list, p, ComparePrefix)
	return ok
}

// want is what the kernel should hold for one prefix.
type want struct {
	present bool
	until   time.Time // zero with present: until unblocked
}

func (w want) timeout(now time.Time) time.Duration {
	if w.until.IsZero() {
		return 0
	}
	return max(time.Millisecond, w.until.Sub(now).Round(time.Millisecond))
}

// want computes the kernel's element for p from every claim and feed at now.
func (b *blocklist) want(p netip.Prefix, now time.Time) want { return b.wantExcept(p, now, "") }

// wantExcept is want with the feed named skip left out.
func (b *blocklist) wantExcept(p netip.Prefix, now time.Time, skip string) want {
	for name, f := range b.feeds {
		if name != skip && f.has(p) {
			return want{present: true} // in force while the feed lists it; the owner drops stale feeds
		}
	}
	var w want
	for _, c := range b.claims[p] {
		if !c.Permanent() && !c.Until.After(now) {
			continue
		}
		if c.Permanent() {
			return want{present: true}
		}
		w.present = true
		if c.Until.After(w.until) {
			w.until = c.Until
		}
	}
	return w
}

// entry is p's entry with every claim and the feeds that list it.
func (b *blocklist) entry(p netip.Prefix) (Entry, bool) {
	e := Entry{Prefix: p, Claims: slices.Clone(b.claims[p])}
	for name, f := range b.feeds {
		if f.has(p) {
			e.Feeds = append(e.Feeds, name)
		}
	}
	slices.Sort(e.Feeds)
	return e, len(e.Claims) > 0 || len(e.Feeds) > 0
}

// merge adds a claim: one per source, a manual claim replaced by the newer one, any other
// source's kept at the later end (a restore or a repeated verdict never shortens it).
func merge(cs []Claim, c Claim) []Claim {
	for i, o := range cs {
		if o.Source != c.Source {
			continue
		}
		if c.Source != SourceManual && (o.Permanent() || (!c.Permanent() && o.Until.After(c.Until))) {
			c.Until = o.Until
		}
		cs[i] = c
		return cs
	}
	return append(cs, c)
}

// allNets is every network the blocklist wants, with its element.
func (b *blocklist) allNets(now time.Time) map[netip.Prefix]want {
	out := map[netip.Prefix]want{}
	for p := range b.claims {
		if !p.IsSingleIP() {
			if w := b.want(p, now); w.present {
				out[p] = w
			}
		}
	}
	for _, f := range b.feeds {
		for _, p := range f.list {
			if !p.IsSingleIP() {
				out[p] = want{present: true}
			}
		}
	}
	return out
}

// collapse drops networks inside another wanted network: the kernel refuses overlapping
// intervals. An inner network that outlives its outer one is written when the outer ends.
func collapse(nets map[netip.Prefix]want) map[netip.Prefix]want {
	ps := make([]netip.Prefix, 0, len(nets))
	for p := range nets {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, ComparePrefix)
	out := make(map[netip.Prefix]want, len(ps))
	var last netip.Prefix
	for _, p := range ps {
		if last.IsValid() && last.Addr().BitLen() == p.Addr().BitLen() && last.Bits() <= p.Bits() && last.Contains(p.Addr()) {
			continue
		}
		out[p] = nets[p]
		last = p
	}
	return out
}

// singles is every single address the blocklist wants, sorted.
func (b *blocklist) singles() []netip.Prefix {
	var out []netip.Prefix
	for p := range b.claims {
		if p.IsSingleIP() {
			out = append(out, p)
		}
	}
	for _, f := range b.feeds {
		for _, p := range f.list {
			if p.IsSingleIP() {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, ComparePrefix)
	return slices.Compact(out)
}

// ---- saved state ----

// savedState is blocklist.json: the claims, and the feeds' metadata (their lists are in
// blocklist/feed-NAME.txt, rewritten only when a list changes).
type savedState struct {
	Version int        `json:"version"`
	Entries []Entry    `json:"entries"`
	Feeds   []FeedInfo `json:"feeds"`
}

func statePath(dir string) string      { return filepath.Join(dir, "blocklist.json") }
func feedPath(dir, name string) string { return filepath.Join(dir, "blocklist", "feed-"+name+".txt") }

// loadBlocklist reads the saved blocklist; a missing file is an empty one (found: false).
func loadBlocklist(dir string, now time.Time) (b *blocklist, found bool, err error) {
	b = &blocklist{claims: map[netip.Prefix][]Claim{}, feeds: map[string]*feedList{}, all: true}
	if dir == "" {
		return b, false, nil
	}
	data, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return b, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("netcfg: read the saved blocklist: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, false, fmt.Errorf("netcfg: %s: %w", statePath(dir), err)
	}
	for _, e := range st.Entries {
		if !e.Prefix.IsValid() {
			continue
		}
		for _, c := range e.Claims {
			if c.Permanent() || c.Until.After(now) {
				b.claims[e.Prefix.Masked()] = merge(b.claims[e.Prefix.Masked()], c)
			}
		}
	}
	for _, fi := range st.Feeds {
		if !fi.Until.After(now) {
			continue
		}
		data, err := os.ReadFile(feedPath(dir, fi.Name))
		if err != nil {
			return nil, false, fmt.Errorf("netcfg: read the saved list of feed %s: %w", fi.Name, err)
		}
		list, err := parseList(data)
		if err != nil {
			return nil, false, fmt.Errorf("netcfg: %s: %w", feedPath(dir, fi.Name), err)
		}
		fi.Entries = len(list)
		b.feeds[fi.Name] = &feedList{FeedInfo: fi, list: list}
	}
	return b, true, nil
}

// saveClaims writes blocklist.json atomically (the offline CLI's way; the owner saves its
// published snapshot).
func (b *blocklist) saveClaims(dir string) error {
	b.all = true
	feeds := make([]FeedInfo, 0, len(b.feeds))
	for _, f := range b.feeds {
		feeds = append(feeds, f.FeedInfo)
	}
	slices.SortFunc(feeds, func(a, b FeedInfo) int { return strings.Compare(a.Name, b.Name) })
	return saveState(dir, b.entries(nil), feeds)
}

// saveState writes blocklist.json atomically: the entries with their claims, and the feeds.
func saveState(dir string, entries []Entry, feeds []FeedInfo) error {
	data, err := json.Marshal(&savedState{Version: 1, Entries: entries, Feeds: feeds})
	if err != nil {
		return err
	}
	return store.WriteFile(statePath(dir), data, 0o600)
}

// saveFeed writes one feed's list atomically.
func saveFeed(dir string, f *feedList) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# community list %s, loaded %s\n", f.Name, f.Loaded.UTC().Format(time.RFC3339))
	for _, p := range f.list {
		buf.WriteString(p.String())
		buf.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(feedPath(dir, f.Name)), 0o700); err != nil {
		return err
	}
	return store.WriteFile(feedPath(dir, f.Name), buf.Bytes(), 0o600)
}

// parseList reads one prefix a line (# comments), as saveFeed writes it.
func parseList(data []byte) ([]netip.Prefix, error) {
	var out []netip.Prefix
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		p, err := parsePrefix(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, p.Masked())
	}
	return out, sc.Err()
}
