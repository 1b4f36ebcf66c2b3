package netcfg

import (
	"fmt"
	"slices"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// The owner's config apply: the ruleset a config gives (and the links, when owned), and the
// protections it implies, with the blocks they now cover lifted.

// SetConfig applies cfg's ruleset (and links, if owned) and the protections it implies. It
// returns once the kernel has it, or with the kernel's refusal, leaving the old one in force.
func (w *Owner) SetConfig(cfg *config.Config) error {
	return w.applyMerged(w.merged(cfg))
}

// applyMerged applies a config from merged, unless one with a later sequence number (a
// newer config, or the same with newer resolved addresses) was applied meanwhile: then that
// one's outcome is this one's too.
func (w *Owner) applyMerged(cfg *config.Config, seq uint64) error {
	if cfg == nil {
		return nil
	}
	tbl := Build(cfg)
	if w.o.NoReplyMarks {
		tbl = tbl.withoutReplyMarks()
	}
	prot := Protections(cfg, w.o.ResolvConf) // may resolve names: not on the loop
	var err error
	if derr := w.do(func() {
		if seq < w.appliedSeq {
			err = w.appliedErr
			return
		}
		w.appliedSeq = seq
		err = w.setConfig(cfg, tbl, prot)
		w.appliedErr = err
	}); derr != nil {
		return derr
	}
	return err
}

func (w *Owner) setConfig(cfg *config.Config, tbl *Table, prot []Protection) error {
	first := w.table == nil
	// Someone else's change since our last write is looked for after this apply, which
	// would otherwise hide it.
	foreign := false
	if g, err := w.fw.Generation(); err == nil {
		foreign = !first && g != w.gen
		w.gen = g
	}
	created, err := w.applyTable(tbl)
	if err != nil {
		return err
	}
	protChanged := first || !slices.Equal(w.prot, prot)
	w.cfg, w.table, w.prot = cfg, tbl, prot
	w.lim = limits{cfg.Blocklist.Widest4, cfg.Blocklist.Widest6}
	w.applied = time.Now()
	if len(created) > 0 {
		w.needWrite = true
	} else if !w.loaded {
		w.takeOver()
	}
	w.loaded = true
	if first {
		w.nets = collapse(w.bl.allNets(time.Now()))
		w.recount()
	}
	if protChanged {
		w.dropProtected()
	}
	switch {
	case w.needWrite:
		w.writeAll("the block sets were created")
	case first:
		// The kernel kept the sets (a restart): make them what was saved, which a crash
		// between a write and its save may have left behind.
		for _, m := range w.syncElements(true) {
			w.o.Log.Info("netcfg: blocklist synced at start", "found", m)
		}
	case foreign:
		if fixed := w.repairElements(); len(fixed) > 0 {
			w.repaired(fixed)
		}
	}
	if w.o.Links {
		warnings, err := ApplyLinks(cfg)
		for _, m := range warnings {
			w.o.Log.Warn(m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// takeOver adopts what the kernel's block sets hold when there is no saved blocklist (an
// upgrade from a version that kept none, or blocks made by the CLI without a daemon).
func (w *Owner) takeOver() {
	list, err := w.fw.Blocklist()
	if err != nil {
		return
	}
	now := time.Now()
	for _, b := range list {
		c := Claim{Source: SourceRestore, By: "kernel", Reason: "found in the kernel at start", Since: now}
		if b.Expires > 0 {
			c.Until = now.Add(b.Expires)
		}
		w.bl.set(b.Prefix, merge(w.bl.claims[b.Prefix], c))
	}
	w.nets = collapse(w.bl.allNets(now))
	w.recount()
	w.dirty = len(list) > 0
}

// SetProtected replaces the protections learned at run time under one name (the gateway and
// DNS servers a DHCP lease gave, say); blocks they now cover are lifted.
func (w *Owner) SetProtected(name string, ps []Protection) error {
	return w.do(func() {
		if len(ps) == 0 {
			delete(w.dyn, name)
		} else {
			w.dyn[name] = slices.Clone(ps)
		}
		w.dropProtected()
	})
}

// dropProtected removes claims and feed entries that the protections now cover (a peer
// added to the config is unblocked at once).
func (w *Owner) dropProtected() {
	prot := w.protections()
	var ops []elemOp
	now := time.Now()
	for p := range w.bl.claims {
		if err := refuse(p, true, prot, w.lim); err != nil {
			before := w.bl.want(p, now)
			w.bl.set(p, nil)
			w.dirty = true
			ops = append(ops, w.singleOps(p, before, w.bl.want(p, now), now)...)
			w.event(events.Warn, "firewall.unblocked", fmt.Sprintf("%s unblocked: %v", p, err), p)
		}
	}
	for _, f := range w.bl.feeds {
		kept := f.list[:0:0]
		for _, p := range f.list {
			if refuse(p, true, prot, w.lim) != nil {
				f.Refused++
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) != len(f.list) {
			old := f.list
			f.list = kept
			w.bl.all = true
			f.Entries = len(kept)
			for _, p := range old {
				if !f.has(p) && p.IsSingleIP() {
					ops = append(ops, w.singleOps(p, want{present: true}, w.bl.want(p, now), now)...)
				}
			}
			w.saveFeedList(f)
		}
	}
	ops = append(ops, w.netOps(now)...)
	w.write(ops)
}

func (w *Owner) protections() []Protection {
	out := slices.Clone(w.prot)
	for _, name := range sortedKeys(w.dyn) {
		out = append(out, w.dyn[name]...)
	}
	return out
}
