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
