package netcfg

import (
	"net/netip"
	"slices"

	"github.com/officeedge/appliance/internal/config"
)

// Keys of SetResolved: a SIP peer's host names, and the admins'.
func PeerKey(name string) string { return "sip_peers." + name }

const AdminKey = "admin"

// SetResolved sets what key's host names resolve to now (PeerKey(name) or AdminKey): the
// addresses are trusted like the key's networks, in the peer sets and the protections, until
// the next call. A change re-applies the ruleset (one atomic batch; the blocklist is kept).
func (w *Owner) SetResolved(key string, addrs []netip.Addr) error {
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, netip.Addr.Compare)
	w.rmu.Lock()
	if slices.Equal(w.resolved[key], addrs) {
		w.rmu.Unlock()
		return nil
	}
	if len(addrs) == 0 {
		delete(w.resolved, key)
	} else {
		w.resolved[key] = addrs
	}
	w.rmu.Unlock()
	if testHookResolved != nil {
		testHookResolved()
	}
	// The config given last when this takes its sequence number, not the one given when the
	// addresses changed: a reload or a revert in between must not be undone.
	return w.applyMerged(w.merged(nil))
}

// testHookResolved runs between a resolution's change and its apply (tests race a reload there).
var testHookResolved func()

// merged is the config to apply: cfg (nil: the last one given; none yet: nil, and the first
// SetConfig takes the addresses) with the resolved addresses joined to their keys' networks,
// and its sequence number. The config and its number are taken under one lock, so a later
// number always carries the later config, and the loop applies the latest.
func (w *Owner) merged(cfg *config.Config) (*config.Config, uint64) {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	if cfg == nil {
		cfg = w.given
	}
	if cfg == nil {
		return nil, 0
	}
	w.given = cfg
	w.cfgSeq++
	if len(w.resolved) == 0 {
		return cfg, w.cfgSeq
	}
	c := *cfg
	c.SIPPeers = make(map[string]*config.SIPPeer, len(cfg.SIPPeers))
	for n, p := range cfg.SIPPeers {
		cp := *p
		cp.Networks = append(slices.Clone(p.Networks), hostPrefixes(w.resolved[PeerKey(n)])...)
		c.SIPPeers[n] = &cp
	}
	c.Admin.Networks = append(slices.Clone(cfg.Admin.Networks), hostPrefixes(w.resolved[AdminKey])...)
	return &c, w.cfgSeq
}

func hostPrefixes(as []netip.Addr) []config.Prefix {
	out := make([]config.Prefix, len(as))
	for i, a := range as {
		out[i] = config.Prefix{Prefix: netip.PrefixFrom(a, a.BitLen())}
	}
	return out
}
