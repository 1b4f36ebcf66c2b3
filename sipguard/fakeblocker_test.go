package sipguard

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/officeedge/appliance/netcfg"
)

// fakeBlocker is an in-memory owner: claims per source, feeds, protections and watchers;
// the kernel path is covered by the lab tests.
type fakeBlocker struct {
	mu        sync.Mutex
	entries   map[netip.Prefix]netcfg.Entry
	dur       map[netip.Prefix]time.Duration // the last sipguard request's For
	feeds     map[string][]netip.Prefix
	keep      map[string]time.Duration
	setFeeds  int // SetFeed calls
	blocks    int // Block calls
	protected []netip.Prefix
	fail      bool
	watchers  map[chan struct{}]bool
}

func newFake() *fakeBlocker {
	return &fakeBlocker{entries: map[netip.Prefix]netcfg.Entry{}, dur: map[netip.Prefix]time.Duration{},
		feeds: map[string][]netip.Prefix{}, keep: map[string]time.Duration{}, watchers: map[chan struct{}]bool{}}
}

func (f *fakeBlocker) Block(r netcfg.BlockRequest) (netcfg.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocks++
	if f.fail {
		return netcfg.Entry{}, errors.New("netlink: no buffer space")
	}
	if n, ok := f.protection(r.Prefix); ok {
		return netcfg.Entry{}, &netcfg.ProtectedError{Prefix: r.Prefix, By: n}
	}
	c := netcfg.Claim{Source: r.Source, By: r.By, Reason: r.Reason, Since: time.Now()}
	if r.For > 0 {
		c.Until = c.Since.Add(r.For)
	}
	e := f.entries[r.Prefix]
	e.Prefix = r.Prefix
	// Entries handed out are never changed after: new claims go in a new slice.
	e.Claims = append(slices.DeleteFunc(slices.Clone(e.Claims), func(o netcfg.Claim) bool { return o.Source == r.Source }), c)
	f.entries[r.Prefix] = e
	if r.Source == netcfg.SourceSIPGuard {
		f.dur[r.Prefix] = r.For
	}
	f.notify()
	return e, nil
}

// protection is what of the fake's own small list p overlaps (f.mu held).
func (f *fakeBlocker) protection(p netip.Prefix) (netcfg.Protection, bool) {
	for _, n := range f.protected {
		if n.Overlaps(p) {
			return netcfg.Protection{Prefix: n, Why: "gateway of uplink fttc"}, true
		}
	}
	return netcfg.Protection{}, false
}

func (f *fakeBlocker) Protects(p netip.Prefix) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.protection(p)
	return n.Why, ok
}

func (f *fakeBlocker) Unblock(p netip.Prefix, by string) (netcfg.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[p]
	if !ok {
		return netcfg.Entry{}, fmt.Errorf("%s is not blocked", p)
	}
	delete(f.entries, p)
	delete(f.dur, p)
	f.notify()
	return e, nil
}

// expire ends source's claim on p, as the owner does when its time is up.
func (f *fakeBlocker) expire(p netip.Prefix, source string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[p]
	e.Claims = slices.DeleteFunc(slices.Clone(e.Claims), func(c netcfg.Claim) bool { return c.Source == source })
	if len(e.Claims) == 0 {
		delete(f.entries, p)
	} else {
		f.entries[p] = e
	}
	f.notify()
}

func (f *fakeBlocker) SetFeed(name string, ps []netip.Prefix, keep time.Duration) (netcfg.FeedResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setFeeds++
	var r netcfg.FeedResult
	old := f.feeds[name]
	var in []netip.Prefix
	for _, p := range ps {
		if _, ok := f.protection(p); ok {
			r.Refused = append(r.Refused, &netcfg.ProtectedError{Prefix: p})
			continue
		}
		in = append(in, p)
		if !slices.Contains(old, p) {
			r.Added++
		}
	}
	for _, p := range old {
		if !slices.Contains(in, p) {
			r.Removed++
		}
	}
	r.Entries = len(in)
	f.feeds[name], f.keep[name] = in, keep
	f.notify()
	return r, nil
}

func (f *fakeBlocker) Lookup(p netip.Prefix) (netcfg.Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[p]
	return e, ok
}

func (f *fakeBlocker) Packets() map[netip.Prefix]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[netip.Prefix]uint64{}
	for p := range f.entries {
		out[p] = 7
	}
	return out
}

func (f *fakeBlocker) Watch() (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{}, 1)
	f.watchers[ch] = true
	return ch, func() { f.mu.Lock(); delete(f.watchers, ch); f.mu.Unlock() }
}

// notify signals every watcher without blocking (f.mu held).
func (f *fakeBlocker) notify() {
	for ch := range f.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// get returns how long sipguard asked p to be blocked, and whether sipguard's claim is there.
func (f *fakeBlocker) get(p string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pp := netip.MustParsePrefix(p)
	if !slices.ContainsFunc(f.entries[pp].Claims, func(c netcfg.Claim) bool { return c.Source == netcfg.SourceSIPGuard }) {
		return 0, false
	}
	return f.dur[pp], true
}

func (f *fakeBlocker) feed(name string) ([]netip.Prefix, time.Duration, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.feeds[name], f.keep[name], f.setFeeds
}

// lateProtection is an owner whose protection came after sipguard asked: Protects says
// no, Block refuses.
type lateProtection struct{ *fakeBlocker }

func (lateProtection) Protects(netip.Prefix) (string, bool) { return "", false }
