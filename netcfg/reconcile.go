package netcfg

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/events"
)

// The owner's drift check: the kernel's ruleset generation against the one it left.

// applyTable writes the ruleset (one transaction) and moves w.gen past it.
func (w *Owner) applyTable(t *Table) (created []string, err error) {
	err = w.tracked(func() (int, error) {
		var aerr error
		created, aerr = w.fw.apply(t)
		if aerr != nil {
			return 0, aerr
		}
		return 1, nil
	})
	return created, err
}

// writeOps writes block set changes in chunks and moves w.gen past them.
func (w *Owner) writeOps(ops []elemOp) error {
	return w.tracked(func() (int, error) { return w.fw.writeOps(ops) })
}

// tracked runs write, which returns how many transactions it committed, and takes the
// generation it leaves as the owner's own. Commits can't simply be counted: the kernel does
// not move the generation for a transaction that changed nothing (an add of an element it
// has, with no new timeout: every chunk of a restart's rewrite of a kept list), and a count
// that runs ahead of the kernel's is drift at every check, forever. So the generation is read
// before and after: it is ours when nobody had moved it since our last write and it moved by
// at most our commits. Otherwise w.gen stays behind and the next check compares. (A foreign
// commit racing a transaction of ours that changed nothing goes unseen: the window is one
// round trip.)
func (w *Owner) tracked(write func() (int, error)) error {
	before, berr := w.fw.Generation()
	n, err := write()
	after, aerr := w.fw.Generation()
	if berr == nil && aerr == nil && before == w.gen && after-before <= uint32(n) {
		w.gen = after
	}
	return err
}

// reconcile compares the kernel with the desired state when anyone changed the ruleset since
// our last write, and repairs what differs: the table or a chain gone (nft flush ruleset),
// a rule or a set element removed by hand.
func (w *Owner) reconcile() {
	if w.needWrite {
		w.writeAll("a previous write failed")
	}
	gen, err := w.fw.Generation()
	if err != nil {
		w.fail(err)
		return
	}
	w.checks++
	if gen == w.gen {
		if !w.settled {
			w.settled = true
			w.o.Log.Info("netcfg: firewall settled: the kernel is as the owner wrote it", "checks", w.checks, "rewrites", w.rewrites)
		}
		return
	}
	problems, err := w.fw.Verify(w.table)
	if err != nil {
		w.fail(err)
		return
	}
	if len(problems) > 0 {
		w.gen = gen
		created, err := w.applyTable(w.table)
		if err != nil {
			w.fail(err)
			return
		}
		if len(created) > 0 {
			w.writeAll("the block sets were gone")
		}
		w.repaired(problems)
		return
	}
	w.gen = gen // someone else's commit, ours not touched so far: compare the elements
	if fixed := w.repairElements(); len(fixed) > 0 {
		w.repaired(fixed)
	}
}

// maxDump is the most block set entries the owner reads back from the kernel: a set dump
// restarts its walk for every netlink message, so it costs the square of the set's size
// (50k entries: 1 s of kernel time, 500k: minutes).
const maxDump = 20000

// repairElements makes the block sets' elements the desired ones after someone else changed
// the ruleset: small sets are read back and the difference written; big ones have every
// wanted element written again (adds are idempotent and linear), and entries added by hand
// are then left alone.
func (w *Owner) repairElements() []string { return w.syncElements(false) }

// syncElements is repairElements; adopt takes entries the kernel has and the desired state
// lacks as restored claims instead of deleting them (at start: a crash between a write and
// its save must not lose a block).
func (w *Owner) syncElements(adopt bool) []string {
	now := time.Now()
	wantAll := map[netip.Prefix]want{}
	for _, p := range w.bl.singles() {
		if x := w.bl.want(p, now); x.present && (x.until.IsZero() || x.until.Sub(now) > time.Second) {
			wantAll[p] = x
		}
	}
	for p, x := range w.nets {
		if x.until.IsZero() || x.until.Sub(now) > time.Second {
			wantAll[p] = x
		}
	}
	var ops []elemOp
	var out []string
	if w.counts.Total() > maxDump {
		for p, x := range wantAll {
			ops = append(ops, elemOp{p: p, add: true, timeout: x.timeout(now)})
		}
		out = append(out, fmt.Sprintf("the ruleset was changed by someone else; all %d blocklist entries were written again", len(ops)))
	} else {
		have := map[netip.Prefix]time.Duration{}
		for _, name := range BlockSets {
			list, err := w.fw.setList(name)
			if err != nil {
				w.fail(err)
				return nil
			}
			for _, b := range list {
				have[b.Prefix] = b.Expires
			}
		}
		missing, extra := 0, 0
		for p, x := range wantAll {
			if _, ok := have[p]; !ok {
				missing++
				ops = append(ops, elemOp{p: p, add: true, timeout: x.timeout(now)})
			}
		}
		for p, left := range have {
			if _, ok := wantAll[p]; ok || w.bl.want(p, now) != (want{}) || w.nets[p] != (want{}) {
				continue
			}
			extra++
			if adopt {
				c := Claim{Source: SourceRestore, By: "kernel", Reason: "found in the kernel at start", Since: now}
				if left > 0 {
					c.Until = now.Add(left)
				}
				w.bl.set(p, merge(w.bl.claims[p], c))
				w.dirty = true
				continue
			}
			ops = append(ops, elemOp{p: p, del: true})
		}
		if adopt && extra > 0 {
			w.nets = collapse(w.bl.allNets(now))
			w.recount()
		}
		if missing > 0 {
			out = append(out, fmt.Sprintf("%d blocklist entries were missing from the kernel", missing))
		}
		switch {
		case extra > 0 && adopt:
			out = append(out, fmt.Sprintf("%d entries in the kernel were not in the saved blocklist: kept", extra))
		case extra > 0:
			out = append(out, fmt.Sprintf("%d entries nobody asked for were in the kernel's blocklist", extra))
		}
	}
	if len(ops) == 0 {
		return out
	}
	err := w.writeOps(ops)
	if len(ops) > bigLoad {
		ops = nil
		w.giveBack()
	}
	if err != nil {
		w.fail(err)
		return nil
	}
	w.recount()
	if w.counts.Total() > maxDump {
		// Nothing was found missing for sure: a routine rewrite, not an alert.
		w.rewrites++
		w.o.Log.Info("netcfg: blocklist rewritten", "why", out[0])
		return nil
	}
	return out
}

func (w *Owner) repaired(what []string) {
	w.repairs++
	w.lastFix = strings.Join(what, "; ")
	w.o.Log.Warn("netcfg: firewall drift repaired", "found", w.lastFix)
	w.o.Bus.Publish(events.Event{Kind: "firewall.drift", Severity: events.Alert, Source: "firewall",
		Message: "the firewall in the kernel differed from the configuration and was repaired: " + w.lastFix})
}
