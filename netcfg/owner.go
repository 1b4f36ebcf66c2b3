package netcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/version"
)

// OwnerOptions configure the owner of the box's kernel state.
type OwnerOptions struct {
	Firewall *Firewall     // the kernel (New(0)); the owner keeps its own lasting connection to it
	StateDir string        // blocklist.json and blocklist/ (feed lists) go here ("" keeps nothing)
	Bus      *events.Bus   // firewall.* events (drift repaired, a write that failed)
	Alerts   *alerts.Store // raised while the kernel refuses what the owner writes
	Log      *slog.Logger
	Links    bool          // also own the links, addresses and default routes (ApplyLinks)
	Check    time.Duration // how often the kernel is compared with the desired state (default 2s)
	// ResolvConf lists DNS servers to protect ("" for none; the daemon gives /etc/resolv.conf).
	ResolvConf string
	// NoReplyMarks leaves the reply-routing chains out: a kernel without conntrack marks
	// refuses the whole ruleset with them, and one without policy routing has no use for them.
	NoReplyMarks bool
}

// Owner is the one writer of the appliance's nftables table, links and routes. A single
// goroutine (Run) holds the desired state — the ruleset from the config, the blocklist with
// every claim on each entry, the protected networks — and reconciles the kernel to it;
// everything else sends it typed requests, which it serves one at a time.
type Owner struct {
	o    OwnerOptions
	reqs chan request
	snap atomic.Pointer[BlockState]

	wmu      sync.Mutex
	watchers map[chan struct{}]struct{}

	pmu       sync.Mutex // the packet counter cache
	packets   map[netip.Prefix]uint64
	packetsAt time.Time
	reader    *Firewall // its own socket: counters are read beside the owner's writes

	// Everything below is the loop's alone.
	fw         *Firewall
	bl         *blocklist
	loaded     bool // a saved blocklist was found (otherwise the kernel's is taken over once)
	cfg        *config.Config
	table      *Table
	prot       []Protection            // from the config
	dyn        map[string][]Protection // learned at run time
	lim        limits
	nets       map[netip.Prefix]want // the networks written to the kernel (collapsed)
	counts     BlockCounts
	gen        uint32 // ruleset generation after our last write; 0: unknown
	applied    time.Time
	repairs    int
	checks     int  // generation checks since start
	rewrites   int  // whole blocklist written again since start
	settled    bool // a check found the kernel as the owner left it (said once)
	lastFix    string
	lastErr    string
	dirty      bool // claims changed since the last save
	savedAt    time.Time
	saveSeq    uint64      // snapshots handed to writeState
	saving     atomic.Bool // a periodic save is being written
	saveMu     sync.Mutex  // one writer of blocklist.json at a time, newest wins
	savedSeq   uint64      // under saveMu
	saveFailed atomic.Bool
	needWrite  bool      // the kernel's block sets were created empty: write every element
	releaseAt  time.Time // a big load left tens of MB of garbage: give it back then

	rmu        sync.Mutex
	given      *config.Config          // the last SetConfig's, under rmu
	resolved   map[string][]netip.Addr // SetResolved's, under rmu
	cfgSeq     uint64                  // under rmu
	appliedSeq uint64                  // the loop's
	appliedErr error                   // the loop's: the outcome of appliedSeq's config
}

type request struct {
	fn   func()
	done chan struct{}
}

// ErrOwnerStopped means the owner's goroutine did not take a request in time.
var ErrOwnerStopped = errors.New("netcfg: the firewall owner is not running")

// NewOwner loads the saved blocklist; Run starts reconciling.
func NewOwner(o OwnerOptions) (*Owner, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Bus == nil {
		o.Bus = events.New(100)
	}
	if o.Check <= 0 {
		o.Check = 2 * time.Second
	}
	if o.Firewall == nil {
		o.Firewall = New(0)
	}
	bl, found, err := loadBlocklist(o.StateDir, time.Now())
	if err != nil {
		return nil, err
	}
	w := &Owner{o: o, reqs: make(chan request), watchers: map[chan struct{}]struct{}{},
		fw: o.Firewall.Lasting(), reader: New(o.Firewall.netns), bl: bl, loaded: found,
		dyn: map[string][]Protection{}, resolved: map[string][]netip.Addr{}, nets: map[netip.Prefix]want{}, lim: limits{16, 32}}
	w.snap.Store(&BlockState{Widest4: 16, Widest6: 32})
	return w, nil
}

// Run serves requests and repairs drift until ctx ends; the kernel state stays when it returns.
func (w *Owner) Run(ctx context.Context) error {
	defer w.fw.Close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastCheck := time.Now()
	for {
		select {
		case <-ctx.Done():
			w.save(true)
			return nil
		case r := <-w.reqs:
			w.serve(r)
		case now := <-tick.C:
			w.guard(func() {
				w.expire(now)
				if w.table != nil && now.Sub(lastCheck) >= w.o.Check {
					lastCheck = now
					w.reconcile()
				}
				w.save(false)
			})
			w.publish()
			if !w.releaseAt.IsZero() && now.After(w.releaseAt) {
				w.releaseAt = time.Time{}
				debug.FreeOSMemory()
			}
		}
	}
}

// bigLoad is the size of a load (a feed, a rewrite) whose garbage is given back to the OS.
const bigLoad = 50000

// giveBack returns a big load's garbage (tens of MB) to the OS rather than carry it on a box
// with little memory: now, and a second later, once the sender has let go of the list it
// parsed too.
func (w *Owner) giveBack() {
	debug.FreeOSMemory()
	w.releaseAt = time.Now().Add(time.Second)
}

// serve runs one request and publishes its outcome before the caller goes on (so State
// shows it); a panic in it is logged and ends only that request.
func (w *Owner) serve(r request) {
	defer close(r.done)
	w.guard(r.fn)
	w.publish()
}

func (w *Owner) guard(fn func()) {
	defer func() {
		if v := recover(); v != nil {
			w.o.Log.Error("netcfg: owner: panic", "panic", v, "stack", string(debug.Stack()))
			w.lastErr = fmt.Sprint("internal error: ", v)
		}
	}()
	fn()
}

// do runs fn on the owner's goroutine and waits for it.
func (w *Owner) do(fn func()) error {
	r := request{fn: fn, done: make(chan struct{})}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case w.reqs <- r:
	case <-t.C:
		return ErrOwnerStopped
	}
	<-r.done
	return nil
}

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

// ---- the loop's helpers ----

// singleOps is the kernel change for one single address from before to after.
func (w *Owner) singleOps(p netip.Prefix, before, after want, now time.Time) []elemOp {
	if !p.IsSingleIP() {
		return nil // networks change through netOps
	}
	return change(p, before, after, now)
}

// change is the kernel change for one element from before to after.
func change(p netip.Prefix, before, after want, now time.Time) []elemOp {
	if before == after {
		return nil
	}
	switch {
	case !after.present:
		if before.until.IsZero() || before.until.After(now) {
			return []elemOp{{p: p, del: true}}
		}
		return []elemOp{{p: p}} // the kernel expired it already: only the count changes
	case !before.present:
		return []elemOp{{p: p, add: true, timeout: after.timeout(now)}}
	case p.IsSingleIP() && !before.until.IsZero() && !after.until.IsZero() && after.until.After(before.until):
		// The kernel extends an address's timeout on a new add (tested on the hash sets;
		// interval sets get a delete and an add).
		return []elemOp{{p: p, add: true, timeout: after.timeout(now)}}
	}
	return []elemOp{{p: p, del: true, add: true, timeout: after.timeout(now)}}
}

// netOps recomputes the collapsed networks and returns the kernel changes to get there.
func (w *Owner) netOps(now time.Time) []elemOp {
	next := collapse(w.bl.allNets(now))
	var ops []elemOp
	for p, was := range w.nets {
		if _, ok := next[p]; !ok {
			ops = append(ops, change(p, was, want{}, now)...)
		}
	}
	for p, n := range next {
		ops = append(ops, change(p, w.nets[p], n, now)...)
	}
	w.nets = next
	return ops
}

// write sends ops to the kernel and keeps the counts; a failure raises an alert until a
// write succeeds again.
func (w *Owner) write(ops []elemOp) error {
	var real []elemOp
	for _, o := range ops {
		if o.del || o.add {
			real = append(real, o)
		}
	}
	if len(real) > 0 {
		if err := w.writeOps(real); err != nil {
			w.fail(err)
			return err
		}
	}
	w.ok()
	for _, o := range ops {
		d := 0
		switch {
		case o.add && !o.del:
			d = 1
		case !o.add:
			d = -1
		}
		w.count(o.p, d)
	}
	return nil
}

func (w *Owner) count(p netip.Prefix, d int) {
	switch {
	case p.IsSingleIP() && p.Addr().Is4():
		w.counts.Addrs4 += d
	case p.IsSingleIP():
		w.counts.Addrs6 += d
	case p.Addr().Is4():
		w.counts.Nets4 += d
	default:
		w.counts.Nets6 += d
	}
}

// recount computes the counts from the desired state.
func (w *Owner) recount() {
	w.counts = BlockCounts{}
	for _, p := range w.bl.singles() {
		w.count(p, 1)
	}
	for p := range w.nets {
		w.count(p, 1)
	}
}

// writeAll writes every element the blocklist wants, in chunks (an empty set after a start
// on a fresh kernel, or after someone deleted the table).
func (w *Owner) writeAll(why string) {
	now := time.Now()
	var ops []elemOp
	for _, p := range w.bl.singles() {
		if x := w.bl.want(p, now); x.present {
			ops = append(ops, elemOp{p: p, add: true, timeout: x.timeout(now)})
		}
	}
	w.nets = collapse(w.bl.allNets(now))
	for p, x := range w.nets {
		ops = append(ops, elemOp{p: p, add: true, timeout: x.timeout(now)})
	}
	start := time.Now()
	if err := w.writeOps(ops); err != nil {
		w.fail(err)
		return // needWrite stays: the next check tries again
	}
	w.needWrite = false
	w.recount()
	w.ok()
	w.o.Log.Info("netcfg: blocklist written", "why", why, "entries", len(ops), "took", time.Since(start).Round(time.Millisecond))
	if len(ops) > bigLoad {
		ops = nil
		w.giveBack()
	}
}

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

func (w *Owner) fail(err error) {
	msg := err.Error()
	if msg != w.lastErr {
		w.o.Log.Error("netcfg: kernel write failed", "err", err)
		w.o.Bus.Publish(events.Event{Kind: "firewall.error", Severity: events.Alert, Source: "firewall", Message: "the firewall could not be written: " + msg})
	}
	w.lastErr = msg
	if w.o.Alerts != nil {
		w.o.Alerts.Raise("firewall.write", "firewall", "the firewall could not be written: "+msg)
	}
}

func (w *Owner) ok() {
	if w.lastErr != "" && w.o.Alerts != nil {
		w.o.Alerts.Clear("firewall.write")
	}
	w.lastErr = ""
}

func (w *Owner) event(sev events.Severity, kind, msg string, p netip.Prefix) {
	e := events.Event{Kind: kind, Severity: sev, Source: "firewall", Message: msg}
	if p.IsValid() {
		e.Fields = map[string]string{"prefix": p.String()}
	}
	w.o.Bus.Publish(e)
}

// save writes the claims at most once a second (now: whatever the time), so a flood of
// blocks does not wear the SD card out. It writes the published snapshot; the periodic save
// does so on a goroutine of its own, so that encoding 100k entries never holds up a request.
func (w *Owner) save(now bool) {
	if w.saveFailed.Swap(false) {
		w.dirty = true
	}
	if !w.dirty || w.o.StateDir == "" || (!now && time.Since(w.savedAt) < time.Second) {
		return
	}
	w.publish() // the snapshot has every change
	st := w.snap.Load()
	w.saveSeq++
	seq := w.saveSeq
	if now {
		w.dirty, w.savedAt = false, time.Now()
		w.writeState(seq, st)
		return
	}
	if !w.saving.CompareAndSwap(false, true) {
		return // the last one is still being written: the next tick goes again
	}
	w.dirty, w.savedAt = false, time.Now()
	go func() {
		defer w.saving.Store(false)
		w.writeState(seq, st)
	}()
}

// writeState writes snapshot seq unless a newer one is written already.
func (w *Owner) writeState(seq uint64, st *BlockState) {
	w.saveMu.Lock()
	defer w.saveMu.Unlock()
	if seq <= w.savedSeq {
		return
	}
	if err := saveState(w.o.StateDir, st.Entries, st.Feeds); err != nil {
		w.o.Log.Error("netcfg: save the blocklist", "err", err)
		w.saveFailed.Store(true)
		return
	}
	w.savedSeq = seq
}

func (w *Owner) saveFeedList(f *feedList) {
	if w.o.StateDir == "" {
		return
	}
	if err := saveFeed(w.o.StateDir, f); err != nil {
		w.o.Log.Error("netcfg: save feed list", "feed", f.Name, "err", err)
	}
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

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
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
