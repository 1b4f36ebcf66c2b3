package netcfg

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/version"
)

// Expiry: claims and community lists whose time is up leave the kernel.

// expire drops claims and feeds whose time is up.
func (w *Owner) expire(now time.Time) {
	var ops []elemOp
	nets := false
	floor := version.ClockFloor()
	for p, cs := range w.bl.claims {
		if !now.Before(floor) {
			if r, ok := rebased(cs, now, floor); ok {
				w.bl.set(p, r)
				w.dirty = true
				cs = r
			}
		}
		kept := cs[:0:0]
		for _, c := range cs {
			if c.Permanent() || c.Until.After(now) {
				kept = append(kept, c)
			}
		}
		if len(kept) == len(cs) {
			continue
		}
		before := w.bl.want(p, now.Add(-time.Second))
		w.bl.set(p, kept)
		w.dirty = true
		if p.IsSingleIP() {
			ops = append(ops, w.singleOps(p, before, w.bl.want(p, now), now)...)
		} else {
			nets = true
		}
	}
	for name, f := range w.bl.feeds {
		if f.Until.After(now) {
			continue
		}
		w.event(events.Warn, "firewall.feed.expired", fmt.Sprintf("community list %s dropped: not loaded again since %s", name, f.Loaded.UTC().Format(time.RFC3339)), netip.Prefix{})
		list := f.list
		delete(w.bl.feeds, name)
		w.bl.all = true
		w.dirty = true
		for _, p := range list {
			if p.IsSingleIP() {
				ops = append(ops, w.singleOps(p, want{present: true}, w.bl.want(p, now), now)...)
			} else {
				nets = true
			}
		}
	}
	if nets {
		ops = append(ops, w.netOps(now)...)
	}
	if len(ops) > 0 {
		_ = w.write(ops)
	}
}

// rebased moves claims made while the clock was wrong (before floor: a Raspberry Pi without a
// battery, before it reached a time server) to now, keeping their length. The kernel's
// timeouts are relative and were right; only the record was, and the jump must not expire a
// block early.
func rebased(cs []Claim, now, floor time.Time) ([]Claim, bool) {
	var out []Claim
	for i, c := range cs {
		if !c.Since.Before(floor) {
			continue
		}
		if out == nil {
			out = slices.Clone(cs)
		}
		if !c.Permanent() {
			out[i].Until = now.Add(c.Until.Sub(c.Since))
		}
		out[i].Since = now
	}
	return out, out != nil
}
