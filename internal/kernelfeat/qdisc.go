package kernelfeat

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// qdiscProbe is one queueing discipline the shaper (package shaper) or the labs may use.
type qdiscProbe struct {
	name, consequence string
	make              func(attrs netlink.QdiscAttrs) netlink.Qdisc
	ingress           bool // attached at the ingress hook, not as the root
}

var qdiscProbes = []qdiscProbe{
	{"qdisc htb", "no HTB qdisc: the uplinks' upload cannot be shaped ([uplink.*] upload is ignored), so calls wait behind uploads in the modem's queue",
		func(a netlink.QdiscAttrs) netlink.Qdisc { return netlink.NewHtb(a) }, false},
	{"qdisc pfifo", "no pfifo qdisc: the shaper cannot keep its classes' queues short",
		func(a netlink.QdiscAttrs) netlink.Qdisc {
			return &netlink.GenericQdisc{QdiscAttrs: a, QdiscType: "pfifo"}
		}, false},
	{"qdisc tbf", "no TBF qdisc: nothing in the appliance needs it (the labs' line bottlenecks use it)",
		func(a netlink.QdiscAttrs) netlink.Qdisc {
			return &netlink.Tbf{QdiscAttrs: a, Rate: 1 << 20, Limit: 1 << 16, Buffer: 1 << 16}
		}, false},
	{"qdisc fq_codel", "no fq_codel qdisc: the shaper's classes are short FIFOs (the flows of one class are not kept apart)",
		func(a netlink.QdiscAttrs) netlink.Qdisc { return netlink.NewFqCodel(a) }, false},
	{"qdisc cake", "no cake qdisc: the shaper uses HTB with voice, interactive and bulk classes instead of cake's diffserv tins",
		func(a netlink.QdiscAttrs) netlink.Qdisc {
			return &netlink.GenericQdisc{QdiscAttrs: a, QdiscType: "cake"}
		}, false},
	{"qdisc clsact", "no clsact qdisc: nothing in this build needs it",
		func(a netlink.QdiscAttrs) netlink.Qdisc { return &netlink.Clsact{QdiscAttrs: a} }, true},
	{"qdisc ingress", "no ingress qdisc: the download cannot be shaped (only the upload)",
		func(a netlink.QdiscAttrs) netlink.Qdisc { return &netlink.Ingress{QdiscAttrs: a} }, true},
}

// probeAllQdiscs tries each qdisc on the loopback of a network namespace of its own (the
// box's own loopback when it may not make one: its noqueue comes back when the probe's
// qdisc is deleted), then whether an ifb interface can be made there.
func probeAllQdiscs() (qdiscs []error, ifb error) {
	qdiscs = make([]error, len(qdiscProbes))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Left locked on purpose, as in probeAllExprs: the namespace dies with the thread.
		runtime.LockOSThread()
		_ = unix.Unshare(unix.CLONE_NEWNET)
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			for i := range qdiscs {
				qdiscs[i] = fmt.Errorf("no loopback to probe on: %w", err)
			}
			ifb = qdiscs[0]
			return
		}
		for i, p := range qdiscProbes {
			qdiscs[i] = probeQdisc(lo.Attrs().Index, p)
		}
		ifb = probeIfb()
	}()
	<-done
	return qdiscs, ifb
}

func probeQdisc(ifindex int, p qdiscProbe) error {
	a := netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xfff0, 0), Parent: netlink.HANDLE_ROOT}
	if p.ingress {
		a.Handle, a.Parent = netlink.MakeHandle(0xffff, 0), netlink.HANDLE_INGRESS
		if p.name == "qdisc clsact" {
			a.Parent = netlink.HANDLE_CLSACT
		}
	}
	q := p.make(a)
	if err := netlink.QdiscAdd(q); err != nil {
		return err
	}
	return netlink.QdiscDel(q)
}

// probeIfb makes an ifb interface (the download shaper's) and removes it again.
func probeIfb() error {
	const name = "applifbprobe"
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l) // left by a probe that died half-way
	}
	if err := netlink.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		return err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return errors.Join(err, errors.New("made but not found"))
	}
	return netlink.LinkDel(l)
}
