package sipguard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
)

// hold asks for a source to be held in the kernel for d.
type hold struct {
	a netip.Addr
	d time.Duration
}

// holdLoop places the short holds: on its own, so that a hold is never queued behind the
// slower work of a block (records, evidence), as it must land before the source's next
// request. A hold claim lapses by itself; a verdict that follows extends it (the owner
// keeps the longest of a source's claims).
func (g *Guard) holdLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case h := <-g.holds:
			p := netip.PrefixFrom(h.a, h.a.BitLen())
			g.smu.Lock()
			_, blocked := g.st.Blocks[p.String()]
			g.smu.Unlock()
			if blocked || h.d <= 0 || g.neverBlocked(p) {
				continue
			}
			req := netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceSIPGuard, By: "hold",
				Reason: "held: close to a verdict, awaiting the PBX's answer", For: h.d}
			if _, err := g.o.Blocker.Block(req); err != nil {
				g.o.Log.Warn("sipguard: hold", "addr", h.a, "err", err)
			}
		}
	}
}

// offenseMemory is how long an offense counts towards escalating the next block.
const offenseMemory = 30 * 24 * time.Hour

// netOffenders addresses of one IPv6 /64 with offenses get the /64 blocked.
const netOffenders = 3

// offendersIn counts the other addresses in n with an offense still remembered (smu held).
func (g *Guard) offendersIn(n, self netip.Prefix, now time.Time) int {
	c := 0
	for k, o := range g.st.Offenses {
		q, err := netip.ParsePrefix(k)
		if err == nil && q != self && q.IsSingleIP() && n.Contains(q.Addr()) && o != nil && now.Sub(o.Last) <= offenseMemory {
			c++
		}
	}
	return c
}

// coveredByBlock reports whether a block of sipguard's still running on a wider network
// holds p (smu held).
func (g *Guard) coveredByBlock(p netip.Prefix, now time.Time) bool {
	for _, e := range g.st.Blocks {
		if e.Prefix.Bits() < p.Bits() && e.Prefix.Contains(p.Addr()) && (e.Expires.IsZero() || now.Before(e.Expires)) {
			return true
		}
	}
	return false
}

// nextTimeout returns the block duration for an address's next offense and its number.
func (g *Guard) nextTimeout(key string, now time.Time) (time.Duration, int) {
	o := g.st.Offenses[key]
	if o == nil || now.Sub(o.Last) > offenseMemory {
		o = &offense{}
		g.st.Offenses[key] = o
	}
	o.N++
	o.Last = now
	i := o.N - 1
	if i >= len(g.o.BlockTimes) {
		i = len(g.o.BlockTimes) - 1
	}
	return g.o.BlockTimes[i], o.N
}

// block blocks p (the address a, or a network holding it) for the offense of a.
func (g *Guard) block(ctx context.Context, a netip.Addr, p netip.Prefix, k Kind, proof Proof, what string, seen time.Time) {
	// The owner's protections are asked first, whatever the path (an address, a network
	// finding): a block it would refuse is neither recorded nor counted, only alerted.
	if why, ok := g.o.Blocker.Protects(p); ok {
		g.o.Log.Warn("sipguard: not blocked: protected", "addr", a, "prefix", p, "why", why)
		g.protectedAlert(a, k, what, why)
		return
	}
	g.smu.Lock()
	if p.IsSingleIP() && a.Is6() {
		// Several addresses of one /64 offending: one host rotating through its network.
		if n, _ := a.Prefix(64); !g.neverBlocked(n) && g.offendersIn(n, p, seen) >= netOffenders-1 {
			p, what = n, what+" (several addresses of "+n.String()+")"
		}
	}
	if g.coveredByBlock(p, seen) {
		g.smu.Unlock()
		return // its network is blocked already
	}
	key := p.String()
	if old := g.st.Blocks[key]; old != nil && (old.Expires.IsZero() || seen.Before(old.Expires)) {
		// Already blocked (a finding queued before the first block took effect, or after
		// its source record was evicted): one offense, not one per packet in flight.
		g.smu.Unlock()
		return
	}
	d, n := g.o.UnprovenBlockTime, 0
	if proof != ProofNone {
		d, n = g.nextTimeout(key, seen)
	} else {
		d = min(d, g.o.BlockTimes[0])
	}
	g.smu.Unlock()
	now := time.Now()
	e := &Entry{Prefix: p, Reason: k.String(), Detail: what, Since: now, Expires: now.Add(d), Offense: n,
		Proven: proof != ProofNone, Proof: proof.String()}
	base := ""
	if g.o.StateDir != "" {
		base = filepath.Join(g.o.StateDir, "evidence", now.UTC().Format("20060102T150405Z")+"-"+strings.ReplaceAll(a.String(), ":", "_"))
		e.Evidence, e.Report = base+".pcapng", base+".txt"
	}
	// The entry goes in first, so a listing never shows the kernel's entry without its reason.
	g.smu.Lock()
	g.st.Blocks[key] = e
	g.smu.Unlock()
	req := netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceSIPGuard, By: k.String(), Reason: k.String() + ": " + what + proofNote(proof), For: d}
	if _, err := g.o.Blocker.Block(req); err != nil {
		g.refused(a, k, what, key, n > 0, err)
		return
	}
	if g.o.ForgetFlows != nil {
		if err := g.o.ForgetFlows(a); err != nil {
			g.o.Log.Warn("sipguard: delete conntrack entries", "addr", a, "err", err)
		}
	}
	g.mu.Lock()
	g.Stats.Blocks++
	g.mu.Unlock()
	g.save()
	g.o.Log.Info("sipguard: blocked", "addr", a, "reason", k, "detail", what, "for", d, "proven", e.Proven, "latency", time.Since(seen))
	g.o.Bus.Publish(events.Event{Kind: "sipguard.block", Severity: events.Alert, Source: "sipguard",
		Message: fmt.Sprintf("blocked %s for %s: %s (%s)%s", a, d, k, what, offenseNote(n, proof)),
		Fields: map[string]string{"addr": a.String(), "reason": k.String(), "detail": what, "for": d.String(), "evidence": e.Evidence,
			"proven": fmt.Sprint(e.Proven)}})
	if base != "" {
		g.bg.Add(1)
		go func() { defer g.bg.Done(); g.evidence(ctx, e, base, seen) }()
	}
}

// refused undoes the record and offense of a block the owner did not make. A protected
// source is an alert and stays marked done (asking again would be refused again); after
// any other failure the source's next packet tries again.
func (g *Guard) refused(a netip.Addr, k Kind, what, key string, counted bool, err error) {
	g.smu.Lock()
	delete(g.st.Blocks, key)
	if o := g.st.Offenses[key]; counted && o != nil && o.N > 0 {
		o.N--
	}
	g.smu.Unlock()
	if errors.Is(err, netcfg.ErrProtected) {
		// Protected since block asked (a reload, a DHCP lease): the same alert.
		g.o.Log.Warn("sipguard: block refused: protected", "addr", a, "err", err)
		g.protectedAlert(a, k, what, err.Error())
		return
	}
	g.mu.Lock()
	g.eng.markDone(a, false)
	g.mu.Unlock()
	g.o.Log.Error("sipguard: block", "addr", a, "err", err)
	g.o.Bus.Publish(events.Event{Kind: "sipguard.error", Severity: events.Alert, Source: "sipguard",
		Fields:  map[string]string{"addr": a.String(), "reason": k.String(), "detail": what},
		Message: fmt.Sprintf("could not block %s (%s): %v", a, k, err)})
}

// protectedAlert tells that a's offense blocks nothing because the owner protects it, and
// why (the owner's reason). The source stays marked done: asking again would be refused.
func (g *Guard) protectedAlert(a netip.Addr, k Kind, what, why string) {
	g.mu.Lock()
	g.Stats.Alerts++
	g.mu.Unlock()
	g.o.Bus.Publish(events.Event{Kind: "sipguard.protected", Severity: events.Alert, Source: "sipguard",
		Fields:  map[string]string{"addr": a.String(), "reason": k.String(), "detail": what},
		Message: fmt.Sprintf("%s from %s (%s), which the box depends on and never blocks: %s", k, a, what, why)})
}

// Blocked lists sipguard's blocks, sorted by address, with the owner's view of each:
// whether it is in force, until when (the longest claim on it) and, when the owner counts
// them, the packets the kernel dropped.
func (g *Guard) Blocked() []Entry {
	g.smu.Lock()
	list := make([]Entry, 0, len(g.st.Blocks))
	for _, e := range g.st.Blocks {
		list = append(list, *e)
	}
	g.smu.Unlock()
	var packets map[netip.Prefix]uint64
	if pc, ok := g.o.Blocker.(packetCounter); ok {
		packets = pc.Packets()
	}
	now := time.Now()
	snap, _ := g.snapshot()
	for i := range list {
		e := &list[i]
		oe, ok := g.lookup(snap, e.Prefix)
		e.InKernel = ok
		if !ok {
			continue
		}
		e.Expires = oe.Until()
		if !e.Expires.IsZero() {
			e.Remaining = e.Expires.Sub(now).Round(time.Second).String()
		}
		e.Dropped = packets[e.Prefix]
	}
	slices.SortFunc(list, func(a, b Entry) int { return netcfg.ComparePrefix(a.Prefix, b.Prefix) })
	return list
}
