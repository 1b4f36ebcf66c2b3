package box

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/officeedge/appliance/internal/relay"
	"github.com/officeedge/appliance/netcfg"
)

// SourceRelay is the claim source of the blocks the relay shares with the box.
const SourceRelay = "relay"

// Block sharing with the relay, over the tunnel (the relay's tunnel address authenticates
// it: WireGuard lets only the relay's key send from it). The relay's blocks are read every
// fetchEvery; the box's sipguard blocks are sent a second after they change (and every
// pushEvery in any case, so a relay that restarted gets them back).
const (
	fetchEvery   = 10 * time.Second
	pushEvery    = 5 * time.Minute
	pushDebounce = time.Second
)

// sharer is the exchange's state between rounds (the share loop's only).
type sharer struct {
	taken    map[netip.Prefix]bool // the relay's blocks the owner took from it
	pushed   []relay.Block         // the box's list as last sent
	pushedAt time.Time
}

// shareLoop exchanges blocks with the relay while voice goes through it, until ctx ends.
func (p *Part) shareLoop(ctx context.Context) {
	if p.o.Owner == nil {
		return
	}
	sh := &sharer{taken: map[netip.Prefix]bool{}}
	// Blocks taken before a restart are withdrawn when the relay no longer lists them.
	if st := p.o.Owner.State(); st != nil {
		for _, e := range st.Entries {
			for _, c := range e.Claims {
				if c.Source == SourceRelay {
					sh.taken[e.Prefix] = true
				}
			}
		}
	}
	changed, stop := p.o.Owner.Watch()
	defer stop()
	fetch := time.NewTicker(fetchEvery)
	defer fetch.Stop()
	push := time.NewTimer(pushDebounce)
	defer push.Stop()
	for {
		var doFetch, doPush bool
		select {
		case <-ctx.Done():
			return
		case <-changed:
			push.Reset(pushDebounce) // a burst of blocks is sent once
			continue
		case <-fetch.C:
			doFetch = true
		case <-push.C:
			doPush, doFetch = true, sh.pushedAt.IsZero()
		}
		if p.Using() != UsingRelay {
			if sh.pushedAt.IsZero() {
				push.Reset(pushDebounce) // the first exchange as soon as the relay answers
			}
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		st := p.shareRound(ctx, sh, doPush, doFetch)
		cancel()
		p.mu.Lock()
		p.share = st
		p.mu.Unlock()
	}
}

// shareRound sends the box's sipguard blocks to the relay when they changed (or pushEvery
// passed) and takes the relay's into the owner, which refuses what the box depends on (the
// trunks, the admin networks, the relay itself...).
func (p *Part) shareRound(ctx context.Context, sh *sharer, push, fetch bool) Sharing {
	c := p.config()
	cl := relay.ShareClient{Relay: c.Relay.RelayAddr()}
	now := time.Now()
	p.mu.Lock()
	st := p.share
	p.mu.Unlock()
	st.Last, st.Error = now, ""
	mine := p.ownBlocks(now)
	if push || now.Sub(sh.pushedAt) > pushEvery {
		if !slices.Equal(mine, sh.pushed) || now.Sub(sh.pushedAt) > pushEvery {
			if _, err := cl.Push(ctx, mine); err != nil {
				st.Error = err.Error()
			} else {
				sh.pushed, sh.pushedAt, st.Pushed = mine, now, len(mine)
			}
		}
	}
	if !fetch {
		return st
	}
	theirs, err := cl.Fetch(ctx)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	var reqs []netcfg.BlockRequest
	for _, b := range theirs {
		pfx := b.Prefix.Masked()
		if !pfx.IsValid() || pfx.Addr().Zone() != "" {
			continue
		}
		d := relay.MaxShareFor
		if !b.Until.IsZero() {
			d = min(d, b.Until.Sub(now))
		}
		if d < time.Second {
			continue
		}
		reqs = append(reqs, netcfg.BlockRequest{Prefix: pfx, Source: SourceRelay, By: "the voice relay " + c.Relay.Endpoint,
			Reason: "caught at the relay: " + printable(b.Reason, 200), For: d})
	}
	listed := map[netip.Prefix]bool{}
	refused := 0
	for i, err := range p.o.Owner.BlockAll(reqs) {
		if err != nil {
			refused++ // protected or too wide: never blocked, whoever asks
			continue
		}
		listed[reqs[i].Prefix] = true
	}
	for pfx := range sh.taken {
		if !listed[pfx] {
			if err := p.o.Owner.Withdraw(pfx, SourceRelay); err == nil {
				delete(sh.taken, pfx)
			}
		}
	}
	for pfx := range listed {
		sh.taken[pfx] = true
	}
	st.Taken = len(sh.taken)
	if refused > 0 {
		p.log.Info("relay: some of the relay's blocks were refused (they cover what the box depends on, or are too wide)", "refused", refused)
	}
	return st
}

// ownBlocks are the box's sipguard blocks in force, at most relay.MaxShareEntries.
func (p *Part) ownBlocks(now time.Time) []relay.Block {
	var out []relay.Block
	for _, e := range p.o.Owner.State().Entries {
		for _, cl := range e.Claims {
			if cl.Source == netcfg.SourceSIPGuard && (cl.Permanent() || cl.Until.After(now)) {
				out = append(out, relay.Block{Prefix: e.Prefix, Until: cl.Until, Reason: cl.Reason})
				break
			}
		}
		if len(out) == relay.MaxShareEntries {
			break
		}
	}
	return out
}

// printable keeps the relay's reason printable and short: it is shown on the page and in logs.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}
