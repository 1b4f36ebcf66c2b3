package netcfg

import (
	"net/netip"
	"slices"
	"time"
)

// The owner's published state: a snapshot after each change, read without the loop, and
// watchers woken when it changes.

// State is the latest snapshot of the blocklist and the owner's health.
func (w *Owner) State() *BlockState { return w.snap.Load() }

// Watch returns a channel that receives a value (never blocking the owner) after each
// change of State, and a function that ends the watch.
func (w *Owner) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.wmu.Lock()
	w.watchers[ch] = struct{}{}
	w.wmu.Unlock()
	return ch, func() {
		w.wmu.Lock()
		delete(w.watchers, ch)
		w.wmu.Unlock()
	}
}

// Packets reads the kernel's drop counters of the non-feed entries (point lookups on a
// socket of its own, beside the owner's writes; kept for 2 s).
func (w *Owner) Packets() map[netip.Prefix]uint64 {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	if time.Since(w.packetsAt) < 2*time.Second {
		return w.packets
	}
	st := w.State()
	ps := make([]netip.Prefix, 0, len(st.Entries))
	for _, e := range st.Entries {
		ps = append(ps, e.Prefix)
	}
	out := map[netip.Prefix]uint64{}
	if found, err := w.reader.Lookup(ps); err == nil {
		for p, b := range found {
			out[p] = b.Packets
		}
	}
	w.packets, w.packetsAt = out, time.Now()
	return out
}

// publish builds a new snapshot and wakes the watchers.
func (w *Owner) publish() {
	st := &BlockState{Kernel: w.counts, Protected: w.protections(), Widest4: w.lim.widest4, Widest6: w.lim.widest6,
		Applied: w.applied, Repairs: w.repairs, LastRepair: w.lastFix, LastError: w.lastErr, Generation: w.gen,
		Checks: w.checks, Rewrites: w.rewrites}
	old := w.snap.Load()
	var prev []Entry
	if old != nil {
		prev = old.Entries
	}
	st.Entries = w.bl.entries(prev)
	for _, name := range sortedKeys(w.bl.feeds) {
		st.Feeds = append(st.Feeds, w.bl.feeds[name].FeedInfo)
	}
	w.snap.Store(st)
	if old != nil && sameState(old, st) {
		return
	}
	w.wmu.Lock()
	for ch := range w.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	w.wmu.Unlock()
}

func sameState(a, b *BlockState) bool {
	return a.Kernel == b.Kernel && len(a.Entries) == len(b.Entries) && a.Repairs == b.Repairs &&
		a.LastError == b.LastError && a.Applied == b.Applied && slices.EqualFunc(a.Feeds, b.Feeds, func(x, y FeedInfo) bool { return x == y }) &&
		(len(a.Entries) == 0 || &a.Entries[0] == &b.Entries[0] || // unchanged: the same list
			slices.EqualFunc(a.Entries, b.Entries, func(x, y Entry) bool {
				return x.Prefix == y.Prefix && slices.Equal(x.Claims, y.Claims) && slices.Equal(x.Feeds, y.Feeds)
			}))
}
