package netcfg

import "net/netip"

// Protects says whether a block of p would be refused because p overlaps something the box
// depends on, and that protection's Why: the one "never block" list, which sipguard asks
// instead of keeping a copy. The list is the one Block checks (the config's protections,
// the addresses its peers' and admins' names resolve to, what SetProtected gave, such as a
// DHCP lease's gateway and resolvers), with the same overlap rule. It reads the published
// snapshot, not the loop: every request that changes the list publishes it before it
// returns. The width limit is not asked (a forced block may pass it, a protection never).
func (w *Owner) Protects(p netip.Prefix) (why string, ok bool) {
	p, err := checkPrefix(p)
	if err != nil {
		return "", false
	}
	pr, ok := protectedBy(p, w.State().Protected)
	return pr.Why, ok
}
