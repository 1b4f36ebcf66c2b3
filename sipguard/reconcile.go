package sipguard

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
)

// reconcile drops the records of blocks the owner holds no sipguard claim for any more
// (unblocked on the page or the CLI, or expired), and the counters of their sources.
func (g *Guard) reconcile(now time.Time) {
	snap, ready := g.snapshot()
	if !ready {
		return // its list is not in force yet: its first config signals a change
	}
	g.smu.Lock()
	ps := make([]netip.Prefix, 0, len(g.st.Blocks))
	for _, e := range g.st.Blocks {
		ps = append(ps, e.Prefix)
	}
	g.smu.Unlock()
	var gone []netip.Prefix
	for _, p := range ps { // the owner is asked without holding smu
		// A snapshot that lags may still show a claim just lifted: its change signals
		// again. One that does not show a claim just made is confirmed by Lookup.
		if e, ok := snap(p); ok && sipguardClaim(e, now) {
			continue
		}
		if e, ok := g.o.Blocker.Lookup(p); !ok || !sipguardClaim(e, now) {
			gone = append(gone, p)
		}
	}
	g.drop(gone, "")
}

// snapshot returns a lookup in the Blocker's latest snapshot (one that finds nothing
// without one), and whether the Blocker has applied a config: before that, an owner that
// is not running yet would answer from an empty list.
func (g *Guard) snapshot() (func(netip.Prefix) (netcfg.Entry, bool), bool) {
	ss, ok := g.o.Blocker.(stateSnapshot)
	if !ok {
		return func(netip.Prefix) (netcfg.Entry, bool) { return netcfg.Entry{}, false }, true
	}
	st := ss.State()
	if st == nil {
		st = &netcfg.BlockState{}
	}
	return st.Lookup, !st.Applied.IsZero()
}

// lookup finds p's entry in the snapshot, else asks the Blocker.
func (g *Guard) lookup(snap func(netip.Prefix) (netcfg.Entry, bool), p netip.Prefix) (netcfg.Entry, bool) {
	if e, ok := snap(p); ok {
		return e, true
	}
	return g.o.Blocker.Lookup(p)
}

// sipguardClaim reports whether an owner's entry holds a sipguard claim still in force.
func sipguardClaim(e netcfg.Entry, now time.Time) bool {
	for _, c := range e.Claims {
		if c.Source == netcfg.SourceSIPGuard && (c.Permanent() || now.Before(c.Until)) {
			return true
		}
	}
	return false
}

// drop forgets the records of blocks no longer in force and their sources' counters, so a
// source that comes back is judged afresh (its offenses stay, to escalate). why says what
// lifted them ("": unblocked elsewhere, or expired). It reports whether it saved the state.
func (g *Guard) drop(ps []netip.Prefix, why string) bool {
	if len(ps) == 0 {
		return false
	}
	now := time.Now()
	var gone []*Entry
	g.smu.Lock()
	for _, p := range ps {
		if e := g.st.Blocks[p.String()]; e != nil {
			gone = append(gone, e)
		}
	}
	g.smu.Unlock()
	if len(gone) == 0 {
		return false
	}
	// Counters first: once a record is gone, the source's next packet must be judged anew.
	g.mu.Lock()
	for _, e := range gone {
		g.eng.Forget(e.Prefix.Addr())
	}
	g.mu.Unlock()
	g.smu.Lock()
	for _, e := range gone {
		if g.st.Blocks[e.Prefix.String()] == e {
			delete(g.st.Blocks, e.Prefix.String())
		}
	}
	g.smu.Unlock()
	g.save()
	for _, e := range gone {
		w := why
		switch {
		case w != "":
		case !e.Expires.IsZero() && !now.Before(e.Expires):
			w = "its " + e.Reason + " block expired"
		default:
			w = "its " + e.Reason + " block was lifted"
		}
		g.o.Bus.Publish(events.Event{Kind: "sipguard.unblock", Severity: events.Info, Source: "sipguard",
			Message: fmt.Sprintf("%s unblocked: %s", e.Prefix, w), Fields: map[string]string{"addr": e.Prefix.String()}})
	}
	return true
}

// expireEntries drops records whose claim has run out and prunes old offenses.
func (g *Guard) expireEntries(now time.Time) {
	var expired []netip.Prefix
	g.smu.Lock()
	for _, e := range g.st.Blocks {
		if !e.Expires.IsZero() && now.After(e.Expires) {
			expired = append(expired, e.Prefix)
		}
	}
	// Offenses older than the memory no longer escalate anything: without pruning, every
	// address ever blocked would stay in blocks.json, rewritten whole on each block.
	pruned := false
	for k, o := range g.st.Offenses {
		if o == nil || now.Sub(o.Last) > offenseMemory {
			if _, blocked := g.st.Blocks[k]; !blocked {
				delete(g.st.Offenses, k)
				pruned = true
			}
		}
	}
	g.smu.Unlock()
	if saved := g.drop(expired, ""); pruned && !saved {
		g.save()
	}
}
