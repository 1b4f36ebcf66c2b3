package shaper

import (
	"errors"
	"fmt"
	"math"
	"time"

	tc "github.com/florianl/go-tc"
	"github.com/florianl/go-tc/core"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/netcfg"
)

// The tree on each shaped uplink (netcfg.Priority* pick the leaf classes with `meta priority
// set`, so no tc filter is needed: HTB sends a packet whose skb priority names one of its
// classes straight there, net/sched/sch_htb.c htb_classify):
//
//	1:   htb, default 1:30
//	1:1  the shaped rate (95 % of the line: the queue forms here, not in the modem)
//	1:10 voice        prio 0, guaranteed 30 %, may take all
//	1:20 interactive  prio 1, guaranteed 20 %, may take all
//	1:30 bulk         prio 2, guaranteed 50 %, may take all
//
// with a short pfifo (fq_codel where the kernel has it) under each leaf.
//
// go-tc rather than vishvananda/netlink: netlink v1.3.1 cannot set a fifo's limit (its
// generic qdisc sends no options, and the kernel then queues tx_queue_len = 1000 packets,
// seconds at a few Mbit/s: the very bufferbloat this removes).

// Handles of the tree.
const (
	rootHandle = 0x00010000 // 1:
	topClass   = 0x00010001 // 1:1
)

// Class is one leaf class of the tree.
type Class struct {
	Name   string
	Handle uint32 // netcfg.Priority*
	Prio   uint32 // HTB priority: lower is served first
	Share  uint64 // guaranteed percent of the shaped rate
	Leaf   uint32 // handle of its leaf qdisc
}

// Classes are the leaf classes, voice first.
var Classes = []Class{
	{"voice", netcfg.PriorityVoice, 0, 30, 0x00100000},
	{"interactive", netcfg.PriorityInteractive, 1, 20, 0x00200000},
	{"bulk", netcfg.PriorityBulk, 2, 50, 0x00300000},
}

// ShapedPercent is the share of the line's rate the box shapes to: just under the line, so
// the modem's queue stays empty and the order is the box's.
const ShapedPercent = 95

// leafDelay is how much queue each leaf holds at the shaped rate: enough for TCP to fill the
// line, short enough that a late packet is dropped rather than made later.
const leafDelay = 50 * time.Millisecond

// leafLimit is a leaf pfifo's limit in packets for a shaped rate in bit/s.
func leafLimit(bits uint64) uint32 {
	n := float64(bits) / 8 * leafDelay.Seconds() / 1500
	return uint32(math.Max(10, math.Min(2000, math.Ceil(n))))
}

// shaped is the rate the box shapes a line of rate bits to.
func shaped(bits uint64) uint64 { return bits * ShapedPercent / 100 }

// tree writes the whole tree on ifindex at rate (bit/s, already the shaped one). It is
// idempotent: what is right is only touched, a drifted part is put back (HTB cannot change
// its root's settings in place: a wrong root is deleted and made anew).
func tree(c *tc.Tc, h *netlink.Handle, ifindex uint32, rate uint64, fqCodel bool) error {
	qs, err := qdiscs(c, ifindex)
	if err != nil {
		return err
	}
	if q, ok := qs[rootHandle]; !ok || !rootOK(q) {
		if ok {
			if err := remove(h, ifindex, rootHandle, tc.HandleRoot, q.Kind); err != nil {
				return fmt.Errorf("remove the wrong root: %w", err)
			}
		}
		root := tc.Object{Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Handle: rootHandle, Parent: tc.HandleRoot},
			Attribute: tc.Attribute{Kind: "htb", Htb: &tc.Htb{Init: &tc.HtbGlob{Version: 3, Rate2Quantum: 10, Defcls: netcfg.PriorityBulk & 0xffff}}}}
		if err := c.Qdisc().Replace(&root); err != nil {
			return fmt.Errorf("htb root: %w", err)
		}
	}
	if err := classes(c, ifindex, rate); err != nil {
		return err
	}
	kind := leafKind(fqCodel)
	for _, cl := range Classes {
		leaf := tc.Object{Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Handle: cl.Leaf, Parent: cl.Handle}}
		if q, ok := qs[cl.Leaf]; ok && (q.Kind != kind || q.Parent != cl.Handle) {
			if err := remove(h, ifindex, cl.Leaf, q.Parent, q.Kind); err != nil {
				return fmt.Errorf("remove the wrong leaf of class %s: %w", cl.Name, err)
			}
		}
		if fqCodel {
			leaf.Attribute = tc.Attribute{Kind: kind, FqCodel: &tc.FqCodel{}}
		} else {
			leaf.Attribute = tc.Attribute{Kind: kind, Pfifo: &tc.FifoOpt{Limit: leafLimit(rate)}}
		}
		if err := c.Qdisc().Replace(&leaf); err != nil {
			return fmt.Errorf("leaf of class %s: %w", cl.Name, err)
		}
	}
	return nil
}

func leafKind(fqCodel bool) string {
	if fqCodel {
		return "fq_codel"
	}
	return "pfifo"
}

func rootOK(q qdisc) bool {
	return q.Parent == tc.HandleRoot && q.Kind == "htb" && q.Htb != nil && q.Htb.Init != nil && q.Htb.Init.Defcls == netcfg.PriorityBulk&0xffff
}

// classes writes the HTB classes for rate (bit/s): the whole of a rate change.
func classes(c *tc.Tc, ifindex uint32, rate uint64) error {
	if err := c.Class().Replace(htbClass(ifindex, topClass, rootHandle, rate, rate, 0)); err != nil {
		return fmt.Errorf("class 1:1: %w", err)
	}
	for _, cl := range Classes {
		if err := c.Class().Replace(htbClass(ifindex, cl.Handle, topClass, max(rate*cl.Share/100, 8000), rate, cl.Prio)); err != nil {
			return fmt.Errorf("class %s: %w", cl.Name, err)
		}
	}
	return nil
}

// burst is how many bytes a class may send at once: a millisecond at its rate and a full
// packet (iproute2's default, rate/HZ + MTU).
func burst(bytesPerSec uint64) uint32 { return uint32(bytesPerSec/1000) + 1600 }

func htbClass(ifindex, handle, parent uint32, rate, ceil uint64, prio uint32) *tc.Object {
	r, cl := rate/8, ceil/8
	opt := &tc.HtbOpt{
		// Ethernet link layer: the kernel then needs no rate table (iproute2's legacy).
		Rate:    tc.RateSpec{Rate: uint32(min(r, math.MaxUint32)), Linklayer: 1},
		Ceil:    tc.RateSpec{Rate: uint32(min(cl, math.MaxUint32)), Linklayer: 1},
		Buffer:  core.XmitTime(r, burst(r)),
		Cbuffer: core.XmitTime(cl, burst(cl)),
		Quantum: 1600, // one packet: only classes of the same prio share by quantum
		Prio:    prio,
	}
	h := &tc.Htb{Parms: opt}
	if r > math.MaxUint32 {
		h.Rate64 = &r
	}
	if cl > math.MaxUint32 {
		h.Ceil64 = &cl
	}
	return &tc.Object{Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Handle: handle, Parent: parent},
		Attribute: tc.Attribute{Kind: "htb", Htb: h}}
}

// errDrift says the kernel's tree is not the one wanted; its text says what differs.
var errDrift = errors.New("shaper tree drifted")

// check compares the kernel's tree on ifindex with the wanted one at rate: nil when it is
// the same, errDrift wrapped with what differs, or the error reading it.
func check(c *tc.Tc, ifindex uint32, rate uint64, fqCodel bool) error {
	qs, err := qdiscs(c, ifindex)
	if err != nil {
		return err
	}
	if q, ok := qs[rootHandle]; !ok || !rootOK(q) {
		return fmt.Errorf("%w: no htb root 1: with default class 1:30", errDrift)
	}
	for _, cl := range Classes {
		q, ok := qs[cl.Leaf]
		want := leafKind(fqCodel)
		if !ok || q.Parent != cl.Handle || q.Kind != want {
			return fmt.Errorf("%w: no %s leaf under class %s", errDrift, want, cl.Name)
		}
		if !fqCodel && (q.Pfifo == nil || q.Pfifo.Limit != leafLimit(rate)) {
			return fmt.Errorf("%w: the %s leaf's limit changed", errDrift, cl.Name)
		}
	}
	cs, err := c.Class().Get(&tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex})
	if err != nil {
		return fmt.Errorf("list classes: %w", err)
	}
	want := map[uint32][2]uint64{topClass: {rate, rate}}
	for _, cl := range Classes {
		want[cl.Handle] = [2]uint64{max(rate*cl.Share/100, 8000), rate}
	}
	for _, o := range cs {
		w, ok := want[o.Handle]
		if !ok || o.Htb == nil || o.Htb.Parms == nil {
			continue
		}
		r, ce := classRate(o.Htb)
		// The kernel keeps bytes per second: compare at that precision.
		if r != w[0]/8 || ce != w[1]/8 {
			return fmt.Errorf("%w: class %x:%x runs at %d/%d bit/s, not %d/%d", errDrift, o.Handle>>16, o.Handle&0xffff, r*8, ce*8, w[0], w[1])
		}
		delete(want, o.Handle)
	}
	for h := range want {
		return fmt.Errorf("%w: class %x:%x is missing", errDrift, h>>16, h&0xffff)
	}
	return nil
}

// classRate is an HTB class's rate and ceil in bytes per second.
func classRate(h *tc.Htb) (rate, ceil uint64) {
	rate, ceil = uint64(h.Parms.Rate.Rate), uint64(h.Parms.Ceil.Rate)
	if h.Rate64 != nil {
		rate = *h.Rate64
	}
	if h.Ceil64 != nil {
		ceil = *h.Ceil64
	}
	return rate, ceil
}

// qdisc is what check needs of one qdisc.
type qdisc struct {
	Parent uint32
	Kind   string
	Htb    *tc.Htb
	Pfifo  *tc.FifoOpt
	Stats  *tc.Stats2
}

// qdiscs lists the qdiscs of ifindex by handle.
func qdiscs(c *tc.Tc, ifindex uint32) (map[uint32]qdisc, error) {
	all, err := c.Qdisc().Get()
	if err != nil {
		return nil, fmt.Errorf("list qdiscs: %w", err)
	}
	out := map[uint32]qdisc{}
	for _, o := range all {
		if o.Ifindex == ifindex {
			out[o.Handle] = qdisc{Parent: o.Parent, Kind: o.Kind, Htb: o.Htb, Pfifo: o.Pfifo, Stats: o.Stats2}
		}
	}
	return out, nil
}

// remove deletes one qdisc of the given kind (the root: the whole tree; the kernel puts its
// default back). vishvananda/netlink: go-tc v0.4.8 cannot delete a qdisc without its options.
func remove(h *netlink.Handle, ifindex, handle, parent uint32, kind string) error {
	err := h.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: int(ifindex), Handle: handle, Parent: parent}, QdiscType: kind})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}
