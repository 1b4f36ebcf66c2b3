package netcfg

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/events"
)

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
