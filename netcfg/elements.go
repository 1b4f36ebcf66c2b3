package netcfg

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// elemOp is one change to a block set: p is deleted (del) and/or added with timeout (0: until
// unblocked). A delete and an add of the same prefix go in one transaction (a new timeout
// the kernel would not take as an update, or a permanent entry becoming timed).
type elemOp struct {
	p       netip.Prefix
	del     bool
	add     bool
	timeout time.Duration
}

// chunk is how many elements one transaction carries: each set's elements go in one netlink
// message, whose attribute length is 16 bits (64 KiB: about 1,500 IPv4 elements with
// timeouts), and a small batch is quick to retry. 500k entries take about 500 round trips.
const chunk = 1024

// writeOps applies block set changes in chunks, each its own transaction; it returns how
// many transactions it committed.
func (f *Firewall) writeOps(ops []elemOp) (commits int, err error) {
	for len(ops) > 0 {
		n, i := 0, 0
		for i < len(ops) && n < chunk {
			n += opElems(ops[i])
			i++
		}
		if err := f.writeChunk(ops[:i]); err != nil {
			return commits, err
		}
		commits++
		ops = ops[i:]
	}
	return commits, nil
}

func opElems(o elemOp) int {
	n := 1
	if !o.p.IsSingleIP() {
		n = 2
	}
	if o.del && o.add {
		n *= 2
	}
	return n
}

// writeChunk sends one transaction: the deletes, then the adds. A delete of an element the
// kernel expired meanwhile fails the whole transaction (ENOENT); the chunk is then sent
// again without the deletes of elements that are gone.
func (f *Firewall) writeChunk(ops []elemOp) error {
	err := f.sendChunk(ops)
	if !errors.Is(err, unix.ENOENT) {
		return err
	}
	present, lerr := f.Lookup(deleted(ops))
	if lerr != nil {
		return err
	}
	kept := make([]elemOp, 0, len(ops))
	for _, o := range ops {
		if _, ok := present[o.p]; o.del && !ok {
			o.del = false
			if !o.add {
				continue
			}
		}
		kept = append(kept, o)
	}
	return f.sendChunk(kept)
}

func deleted(ops []elemOp) []netip.Prefix {
	var out []netip.Prefix
	for _, o := range ops {
		if o.del {
			out = append(out, o.p)
		}
	}
	return out
}

func (f *Firewall) sendChunk(ops []elemOp) error {
	if len(ops) == 0 {
		return nil
	}
	c, err := f.conn()
	if err != nil {
		return err
	}
	dels := map[string][]nftables.SetElement{}
	adds := map[string][]nftables.SetElement{}
	for _, o := range ops {
		name, interval := blockSetFor(o.p)
		if o.del {
			dels[name] = append(dels[name], prefixElements(o.p, interval, 0)...)
		}
		if o.add {
			adds[name] = append(adds[name], prefixElements(o.p, interval, o.timeout)...)
		}
	}
	for _, name := range BlockSets {
		if len(dels[name]) > 0 {
			if err := c.SetDeleteElements(blockSet(name), dels[name]); err != nil {
				return err
			}
		}
	}
	for _, name := range BlockSets {
		if len(adds[name]) > 0 {
			if err := c.SetAddElements(blockSet(name), adds[name]); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		f.reset()
		return fmt.Errorf("netcfg: write blocklist: %w", err)
	}
	return nil
}

// blockSet names a block set for element writes (the kernel finds it by name).
func blockSet(name string) *nftables.Set {
	return &nftables.Set{Table: nftTable(), Name: name, HasTimeout: true, Counter: true,
		Interval: name == SetBlockNet4 || name == SetBlockNet6}
}

// decodeElements turns set elements back into prefixes; interval sets hold each network as
// a start element and an end element (the first address past it).
func decodeElements(els []nftables.SetElement, interval bool) []Blocked {
	out := make([]Blocked, 0, len(els))
	if !interval {
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if ok {
				out = append(out, Blocked{Prefix: netip.PrefixFrom(a, a.BitLen()), Expires: e.Expires, Packets: elemPackets(e)})
			}
		}
		return out
	}
	var starts []nftables.SetElement
	var ends []netip.Addr
	for _, e := range els {
		if e.IntervalEnd {
			ends = append(ends, mustAddr(e.Key))
		} else {
			starts = append(starts, e)
		}
	}
	slices.SortFunc(ends, netip.Addr.Compare)
	for _, s := range starts {
		a, ok := netip.AddrFromSlice(s.Key)
		if !ok {
			continue
		}
		// The network ends at the first end element past its start; none: the top of the space.
		end := netip.Addr{}
		if i, _ := slices.BinarySearchFunc(ends, a, func(e, a netip.Addr) int {
			if e.Compare(a) <= 0 {
				return -1
			}
			return 1
		}); i < len(ends) {
			end = ends[i]
		}
		out = append(out, Blocked{Prefix: netip.PrefixFrom(a, prefixLen(a, end)), Expires: s.Expires, Packets: elemPackets(s)})
	}
	return out
}

// The owner's element diffs: what one change of the desired blocklist means for the kernel's
// block sets, written and counted.

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
