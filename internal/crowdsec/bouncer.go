package crowdsec

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/officeedge/appliance/netcfg"
)

// Owner is the firewall owner, as the bouncer and the machine use it.
type Owner interface {
	BlockAll([]netcfg.BlockRequest) []error
	Withdraw(netip.Prefix, string) error
	State() *netcfg.BlockState
	Watch() (<-chan struct{}, func())
}

// held is one ban decision in force.
type held struct {
	prefix   netip.Prefix
	until    time.Time
	scenario string
	origin   string
}

// bouncer keeps the LAPI's ban decisions and turns each change into owner requests.
type bouncer struct {
	owner     Owner
	decisions map[int64]held
	refused   map[netip.Prefix]string // why the owner refused a decision's prefix
	ignored   int                     // decisions not taken: not a ban, or no address
}

func newBouncer(o Owner) *bouncer {
	return &bouncer{owner: o, decisions: map[int64]held{}, refused: map[netip.Prefix]string{}}
}

// apply takes one answer of the stream: the whole set when startup, else a change. It returns
// an error only when the kernel write failed (then the next pull must be a startup one).
func (b *bouncer) apply(s Stream, startup bool, now time.Time) error {
	touched := map[netip.Prefix]bool{}
	if startup {
		b.decisions, b.refused, b.ignored = map[int64]held{}, map[netip.Prefix]string{}, 0
		// What the owner kept from before (saved across restarts) is checked against the set.
		for _, e := range b.owner.State().Entries {
			if hasSource(e, netcfg.SourceCrowdSec) {
				touched[e.Prefix] = true
			}
		}
	}
	for _, d := range s.Deleted {
		if h, ok := b.decisions[d.ID]; ok {
			delete(b.decisions, d.ID)
			touched[h.prefix] = true
		}
	}
	for _, d := range s.New {
		h, err := parseDecision(d, now)
		if err != nil {
			b.ignored++
			continue
		}
		b.decisions[d.ID] = h
		touched[h.prefix] = true
	}
	for id, h := range b.decisions {
		if !h.until.After(now) {
			delete(b.decisions, id) // the owner's claim ran out on its own
		}
	}
	best := map[netip.Prefix]held{}
	for _, h := range b.decisions {
		if touched[h.prefix] && h.until.After(best[h.prefix].until) {
			best[h.prefix] = h
		}
	}
	var reqs []netcfg.BlockRequest
	var errs []error
	st := b.owner.State()
	for p := range touched {
		h, ok := best[p]
		cur, has := claimOf(st, p)
		if !ok || (has && cur.Until.After(h.until.Add(time.Second))) {
			// Gone, or shortened at the origin: the owner keeps the longer of one source's
			// claims, so a shorter one starts from a withdrawal.
			delete(b.refused, p)
			if has {
				if err := b.owner.Withdraw(p, netcfg.SourceCrowdSec); err != nil {
					errs = append(errs, err)
				}
			}
			if !ok {
				continue
			}
		}
		reqs = append(reqs, netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceCrowdSec, By: "lapi",
			Reason: h.scenario + " (" + h.origin + ")", For: h.until.Sub(now)})
	}
	for i, err := range b.owner.BlockAll(reqs) {
		p := reqs[i].Prefix
		switch {
		case err == nil:
			delete(b.refused, p)
		case errors.Is(err, netcfg.ErrProtected), errors.Is(err, netcfg.ErrTooWide):
			b.refused[p] = err.Error()
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseDecision takes a ban on an address or a range; anything else is not for the kernel.
func parseDecision(d Decision, now time.Time) (held, error) {
	if !strings.EqualFold(d.Type, "ban") {
		return held{}, fmt.Errorf("decision %d: type %q is not a ban", d.ID, d.Type)
	}
	var p netip.Prefix
	var err error
	switch strings.ToLower(d.Scope) {
	case "ip":
		var a netip.Addr
		if a, err = netip.ParseAddr(d.Value); err == nil {
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
	case "range":
		p, err = netip.ParsePrefix(d.Value)
		p = p.Masked()
	default:
		return held{}, fmt.Errorf("decision %d: scope %q is not an address", d.ID, d.Scope)
	}
	if err != nil {
		return held{}, fmt.Errorf("decision %d: %q: %w", d.ID, d.Value, err)
	}
	dur, err := time.ParseDuration(d.Duration)
	if err != nil || dur <= 0 {
		return held{}, fmt.Errorf("decision %d: duration %q", d.ID, d.Duration)
	}
	return held{prefix: p, until: now.Add(dur), scenario: clean(d.Scenario), origin: clean(d.Origin)}, nil
}

// clean keeps a LAPI's text printable and short: it ends up on the page and in the audit log.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 120 {
		s = strings.ToValidUTF8(s[:120], "") + "…"
	}
	return s
}

func hasSource(e netcfg.Entry, src string) bool {
	_, ok := claimIn(e, src)
	return ok
}

func claimIn(e netcfg.Entry, src string) (netcfg.Claim, bool) {
	for _, c := range e.Claims {
		if c.Source == src {
			return c, true
		}
	}
	return netcfg.Claim{}, false
}

func claimOf(st *netcfg.BlockState, p netip.Prefix) (netcfg.Claim, bool) {
	e, ok := st.Lookup(p)
	if !ok {
		return netcfg.Claim{}, false
	}
	return claimIn(e, netcfg.SourceCrowdSec)
}

// refusedList is the refused prefixes with why, sorted.
func (b *bouncer) refusedList() []string {
	out := make([]string, 0, len(b.refused))
	for _, why := range b.refused {
		out = append(out, why)
	}
	sort.Strings(out)
	return out
}

// inForce counts the distinct prefixes of the decisions held.
func (b *bouncer) inForce() int {
	seen := map[netip.Prefix]bool{}
	for _, h := range b.decisions {
		if _, bad := b.refused[h.prefix]; !bad {
			seen[h.prefix] = true
		}
	}
	return len(seen)
}
