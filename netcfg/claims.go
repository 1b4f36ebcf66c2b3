package netcfg

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/events"
)

// Blocklist claims: the requests that block, unblock, withdraw and load community lists, each
// merged into the desired blocklist and written to the kernel before it returns.

// SourceCrowdSec is a decision pulled from a CrowdSec Local API; Reason names its scenario.
const SourceCrowdSec = "crowdsec"

// BlockAll merges many requests in one kernel write (a bouncer's whole decision set at start):
// one request at a time would be one netlink transaction each. The result has one error per
// request, nil where it was taken; a failed kernel write takes none of them.
func (w *Owner) BlockAll(rs []BlockRequest) []error {
	errs := make([]error, len(rs))
	if derr := w.do(func() { w.blockAll(rs, errs) }); derr != nil {
		for i := range errs {
			errs[i] = derr
		}
	}
	return errs
}

func (w *Owner) blockAll(rs []BlockRequest, errs []error) {
	now := time.Now()
	prot := w.protections()
	old := map[netip.Prefix][]Claim{}
	var ops []elemOp
	nets := false
	for i, r := range rs {
		c, p, err := w.claimFor(r, prot, now)
		if err != nil {
			errs[i] = err
			continue
		}
		if _, seen := old[p]; !seen {
			old[p] = w.bl.claims[p]
		}
		before := w.bl.want(p, now)
		w.bl.set(p, merge(slices.Clone(w.bl.claims[p]), c))
		if p.IsSingleIP() {
			ops = append(ops, w.singleOps(p, before, w.bl.want(p, now), now)...)
		} else {
			nets = true
		}
	}
	if nets {
		ops = append(ops, w.netOps(now)...)
	}
	if err := w.write(ops); err != nil {
		for p, cs := range old {
			w.bl.set(p, cs)
		}
		w.nets = collapse(w.bl.allNets(now))
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("netcfg: block %s: %w", rs[i].Prefix, err)
			}
		}
		return
	}
	w.dirty = len(old) > 0 || w.dirty
}

// claimFor checks a request and makes its claim.
func (w *Owner) claimFor(r BlockRequest, prot []Protection, now time.Time) (Claim, netip.Prefix, error) {
	p, err := checkPrefix(r.Prefix)
	if err != nil {
		return Claim{}, p, err
	}
	if r.For < 0 || (r.For > 0 && r.For < time.Millisecond) {
		return Claim{}, p, fmt.Errorf("netcfg: block %s: duration %s: give 0 (until unblocked) or at least 1ms", p, r.For)
	}
	if r.Source == "" || strings.HasPrefix(r.Source, "feed:") {
		return Claim{}, p, fmt.Errorf("netcfg: block %s: a request needs its source (feeds load with SetFeed)", p)
	}
	if err := refuse(p, r.Force, prot, w.lim); err != nil {
		return Claim{}, p, fmt.Errorf("netcfg: block %w", err)
	}
	c := Claim{Source: r.Source, By: r.By, Reason: r.Reason, Since: now}
	if r.For > 0 {
		c.Until = now.Add(r.For)
	}
	return c, p, nil
}

// Withdraw removes one source's claim on p (a decision deleted at its origin), leaving the
// others': a person's block or a detector's verdict on the same address stays. Withdrawing
// a claim the source doesn't hold is no error.
func (w *Owner) Withdraw(p netip.Prefix, source string) error {
	var err error
	if derr := w.do(func() { err = w.withdraw(p, source) }); derr != nil {
		return derr
	}
	return err
}

func (w *Owner) withdraw(p netip.Prefix, source string) error {
	p, err := checkPrefix(p)
	if err != nil {
		return err
	}
	cs := w.bl.claims[p]
	kept := slices.DeleteFunc(slices.Clone(cs), func(c Claim) bool { return c.Source == source })
	if len(kept) == len(cs) {
		return nil
	}
	now := time.Now()
	before := w.bl.want(p, now)
	w.bl.set(p, kept)
	ops := w.singleOps(p, before, w.bl.want(p, now), now)
	if !p.IsSingleIP() {
		ops = w.netOps(now)
	}
	if err := w.write(ops); err != nil {
		w.bl.set(p, cs)
		w.nets = collapse(w.bl.allNets(now))
		return fmt.Errorf("netcfg: withdraw %s from %s: %w", source, p, err)
	}
	w.dirty = true
	if len(kept) == 0 {
		w.event(events.Info, "firewall.unblocked", fmt.Sprintf("%s unblocked: %s withdrew it", p, source), p)
	}
	return nil
}

// Block merges a request into the blocklist and writes it to the kernel.
func (w *Owner) Block(r BlockRequest) (Entry, error) {
	var (
		e   Entry
		err error
	)
	if derr := w.do(func() { e, err = w.block(r) }); derr != nil {
		return Entry{}, derr
	}
	return e, err
}

func (w *Owner) block(r BlockRequest) (Entry, error) {
	now := time.Now()
	c, p, err := w.claimFor(r, w.protections(), now)
	if err != nil {
		return Entry{}, err
	}
	before := w.bl.want(p, now)
	old := w.bl.claims[p]
	w.bl.set(p, merge(slices.Clone(old), c))
	ops := w.singleOps(p, before, w.bl.want(p, now), now)
	if !p.IsSingleIP() {
		ops = w.netOps(now)
	}
	if err := w.write(ops); err != nil {
		w.bl.set(p, old)
		w.nets = collapse(w.bl.allNets(now))
		return Entry{}, fmt.Errorf("netcfg: block %s: %w", p, err)
	}
	w.dirty = true
	if r.Source == SourceManual {
		w.save(true) // a person's block survives a crash right after it; detectors' are batched
	}
	e, _ := w.bl.entry(p)
	return e, nil
}

// Unblock removes every claim on p: manual, detectors, restored, and p from the feeds that
// list it (until their next load lists it again).
func (w *Owner) Unblock(p netip.Prefix, by string) (Entry, error) {
	var (
		e   Entry
		err error
	)
	if derr := w.do(func() { e, err = w.unblock(p, by) }); derr != nil {
		return Entry{}, derr
	}
	return e, err
}

func (w *Owner) unblock(p netip.Prefix, by string) (Entry, error) {
	p, err := checkPrefix(p)
	if err != nil {
		return Entry{}, err
	}
	e, ok := w.bl.entry(p)
	if !ok {
		return Entry{}, fmt.Errorf("netcfg: unblock %s: not blocked", p)
	}
	now := time.Now()
	before := w.bl.want(p, now)
	w.bl.set(p, nil)
	for _, f := range w.bl.feeds {
		if i, found := slices.BinarySearchFunc(f.list, p, ComparePrefix); found {
			f.list = slices.Delete(slices.Clone(f.list), i, i+1)
			f.Entries = len(f.list)
		}
	}
	ops := w.singleOps(p, before, want{}, now)
	if !p.IsSingleIP() {
		ops = w.netOps(now)
	}
	if err := w.write(ops); err != nil {
		return Entry{}, fmt.Errorf("netcfg: unblock %s: %w", p, err)
	}
	w.dirty = true
	w.save(true)
	w.event(events.Info, "firewall.unblocked", fmt.Sprintf("%s unblocked by %s", p, by), p)
	return e, nil
}

// SetFeed replaces a community list's entries. They stay in force until keep has passed
// without another SetFeed for the list (a feed server that is down keeps the last good list,
// across restarts too). Protected and too-wide entries are left out and listed in Refused.
func (w *Owner) SetFeed(name string, ps []netip.Prefix, keep time.Duration) (FeedResult, error) {
	var (
		res FeedResult
		err error
	)
	if derr := w.do(func() { res, err = w.setFeed(name, ps, keep) }); derr != nil {
		return FeedResult{}, derr
	}
	return res, err
}

func (w *Owner) setFeed(name string, ps []netip.Prefix, keep time.Duration) (FeedResult, error) {
	if name == "" || strings.ContainsAny(name, "/\\\x00") {
		return FeedResult{}, fmt.Errorf("netcfg: feed name %q: give a plain name", name)
	}
	now := time.Now()
	prot := w.protections()
	var res FeedResult
	list := make([]netip.Prefix, 0, len(ps))
	refused := 0
	for _, p := range ps {
		p, err := checkPrefix(p)
		if err == nil {
			err = refuse(p, false, prot, w.lim)
		}
		if err != nil {
			refused++
			if len(res.Refused) < 20 {
				res.Refused = append(res.Refused, err)
			}
			continue
		}
		list = append(list, p)
	}
	slices.SortFunc(list, ComparePrefix)
	list = slices.Compact(list)
	old := w.bl.feeds[name]
	f := &feedList{FeedInfo: FeedInfo{Name: name, Entries: len(list), Refused: refused, Loaded: now, Until: now.Add(keep)}, list: list}
	var oldList []netip.Prefix
	if old != nil {
		oldList = old.list
	}
	// Walk both sorted lists once, with the old list still in force: what each added or
	// removed address was, and what it becomes.
	var ops []elemOp
	netsChanged := false
	change := func(p netip.Prefix, after want) {
		if !p.IsSingleIP() {
			netsChanged = true
			return
		}
		ops = append(ops, w.singleOps(p, w.bl.want(p, now), after, now)...)
	}
	i, j := 0, 0
	for i < len(oldList) || j < len(list) {
		switch {
		case j == len(list) || (i < len(oldList) && ComparePrefix(oldList[i], list[j]) < 0):
			change(oldList[i], w.bl.wantExcept(oldList[i], now, name))
			res.Removed++
			i++
		case i == len(oldList) || ComparePrefix(oldList[i], list[j]) > 0:
			change(list[j], want{present: true})
			res.Added++
			j++
		default:
			i, j = i+1, j+1
		}
	}
	w.bl.feeds[name] = f
	w.bl.all = true
	if netsChanged {
		ops = append(ops, w.netOps(now)...)
	}
	if err := w.write(ops); err != nil {
		if old == nil {
			delete(w.bl.feeds, name)
		} else {
			w.bl.feeds[name] = old
		}
		w.nets = collapse(w.bl.allNets(now))
		w.recount()
		return FeedResult{}, fmt.Errorf("netcfg: feed %s: %w", name, err)
	}
	if res.Added > 0 || res.Removed > 0 || old == nil {
		w.saveFeedList(f)
	}
	w.dirty = true
	res.Entries = len(list)
	if len(ps) > bigLoad {
		w.giveBack() // changed or not: the old list, the sender's parsed one and the writes are garbage
	}
	return res, nil
}

// DropFeed removes a community list (taken out of the config).
func (w *Owner) DropFeed(name string) error {
	var err error
	if derr := w.do(func() {
		if _, ok := w.bl.feeds[name]; ok {
			_, err = w.setFeed(name, nil, 0)
			delete(w.bl.feeds, name)
			w.bl.all = true
			w.dirty = true
		}
	}); derr != nil {
		return derr
	}
	return err
}

// Lookup finds p's entry, feed entries included.
func (w *Owner) Lookup(p netip.Prefix) (Entry, bool) {
	var (
		e  Entry
		ok bool
	)
	if w.do(func() { e, ok = w.bl.entry(p.Masked()) }) != nil {
		return w.State().Lookup(p.Masked())
	}
	return e, ok
}
