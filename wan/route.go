package wan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/netcfg"
)

// ActiveMetric is the metric of the default route the wan part points at the active uplink.
// It sits below both uplinks' own default routes (100 primary, 200 backup: netcfg sets a
// static uplink's, wan/dhcp.go a DHCP uplink's), which stay for the probes bound to each
// device. Switching is one atomic route replace, in the main table, so it works without
// policy routing in the kernel; a config reload that rewrites the uplinks' own routes never
// undoes it.
const ActiveMetric = 50

// gateway is where one uplink's traffic goes.
type gateway struct {
	dev string
	gw4 netip.Addr
	gw6 netip.Addr
}

// setActiveRoute points the metric-50 default routes at g. It is idempotent: a route that is
// already right is not touched (a replace would flush every socket's cached route).
func setActiveRoute(g gateway) error {
	link, err := netlink.LinkByName(g.dev)
	if err != nil {
		return fmt.Errorf("wan: switch route: %s: %w", g.dev, err)
	}
	for _, gw := range []netip.Addr{g.gw4, g.gw6} {
		if !gw.IsValid() {
			continue
		}
		family, dst := netlink.FAMILY_V4, &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if gw.Is6() {
			family, dst = netlink.FAMILY_V6, &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		if activeRouteIs(family, link.Attrs().Index, gw) {
			continue
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw.AsSlice(), Priority: ActiveMetric}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("wan: switch route to %s via %s: %w", g.dev, gw, err)
		}
	}
	return nil
}

func activeRouteIs(family, ifindex int, gw netip.Addr) bool {
	rs, err := netlink.RouteListFiltered(family, &netlink.Route{Priority: ActiveMetric, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PRIORITY|netlink.RT_FILTER_TABLE)
	if err != nil {
		return false
	}
	for _, r := range rs {
		if !activeDefault(r) {
			continue
		}
		g, _ := netip.AddrFromSlice(r.Gw)
		return r.LinkIndex == ifindex && g.Unmap() == gw
	}
	return false
}

// activeDefault is a default route at the active metric. The metric is checked here too:
// vishvananda/netlink v1.3.1 ignores RT_FILTER_PRIORITY, and trusting it deleted the
// uplinks' own metric 100/200 routes at every clean stop, leaving the office offline.
func activeDefault(r netlink.Route) bool {
	if r.Priority != ActiveMetric {
		return false
	}
	if r.Dst != nil {
		if ones, _ := r.Dst.Mask.Size(); ones != 0 {
			return false
		}
	}
	return true
}

// removeActiveRoutes deletes the metric-50 default routes: without the wan part running,
// the uplinks' own metrics decide.
func removeActiveRoutes() error {
	var errs []error
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(family, &netlink.Route{Priority: ActiveMetric, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PRIORITY|netlink.RT_FILTER_TABLE)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range rs {
			if !activeDefault(r) {
				continue
			}
			if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wan: remove active route: %w", err)
	}
	return nil
}

// flushFlows deletes the conntrack entries of flows through the uplink with address addr and
// nothing else: those masqueraded to it or from the box itself (reply goes to addr), and those
// that came in to it (original destination addr). Their next packet makes a new entry that
// the masquerade maps to the new uplink, so SIP and RTP move at once instead of refreshing
// the dead mapping forever.
func flushFlows(addr netip.Addr) (uint, error) {
	if !addr.IsValid() {
		return 0, nil
	}
	family := netlink.InetFamily(unix.AF_INET)
	if addr.Is6() {
		family = unix.AF_INET6
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, addrFilters(addr)...)
	if err != nil {
		return n, fmt.Errorf("wan: delete conntrack entries of %s: %w", addr, err)
	}
	return n, nil
}

// addrFilters match the flows of address addr (see flushFlows).
func addrFilters(addr netip.Addr) []netlink.CustomConntrackFilter {
	var reply, orig netlink.ConntrackFilter
	// AddIP fails only for a filter type given twice.
	_ = reply.AddIP(netlink.ConntrackReplyDstIP, addr.AsSlice())
	_ = orig.AddIP(netlink.ConntrackOrigDstIP, addr.AsSlice())
	return []netlink.CustomConntrackFilter{&reply, &orig}
}

// flushLine deletes the conntrack entries of the flows through uplink i, whose address is
// addr: those with its reply-routing mark (they came in on it, over IPv4 or IPv6, DNATed to
// the LAN or not) and those of its address (flushFlows).
func flushLine(i int, addr netip.Addr) (uint, error) {
	var total uint
	var errs []error
	for _, family := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		filters := []netlink.CustomConntrackFilter{replyMarked(netcfg.ReplyMark(i))}
		if addr.IsValid() && addr.Is4() == (family == unix.AF_INET) {
			filters = append(filters, addrFilters(addr)...)
		}
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, filters...)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return total, fmt.Errorf("wan: delete conntrack entries of uplink %d (%s): %w", i, addr, err)
	}
	return total, nil
}

// replyMarked matches the flows whose reply-routing mark is m.
type replyMarked uint32

func (m replyMarked) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	return f.Mark&netcfg.ReplyMarkMask == uint32(m)
}

// Reply routing (the kernel half; the nft half, which marks connections by the uplink they
// came in on, is netcfg's reply_mark chains): uplink i has routing table replyTable(i) with
// its own default routes, and an ip rule sends packets marked netcfg.ReplyMark(i) there.
// These tables and rules are the wan part's, like its metric-50 route: it reconciles them
// while it runs and removes exactly them when it stops.
const (
	replyTableBase = 100  // table 101: primary, 102: backup
	replyRuleBase  = 1000 // rule priority 1001: primary, 1002: backup (before main, 32766)
)

func replyTable(i int) int { return replyTableBase + 1 + i }
func replyPrio(i int) int  { return replyRuleBase + 1 + i }

// ReplyTable is the routing table holding uplink i's own default routes (i in the config's
// Uplink.All()), kept while the wan part runs with policy routing: the voice move routes
// voice into the backup's.
func ReplyTable(i int) int { return replyTable(i) }

// replyRule is uplink i's ip rule for one family.
func replyRule(family, i int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family, r.Priority, r.Table = family, replyPrio(i), replyTable(i)
	r.Mark = netcfg.ReplyMark(i)
	mask := netcfg.ReplyMarkMask
	r.Mask = &mask
	return r
}

// setReplyRoutes makes uplink i's table hold its default routes via g and its ip rules exist.
// A gateway the uplink lacks (a DHCP line without a lease) leaves its table empty: its marked
// replies then follow the main table.
func setReplyRoutes(i int, g gateway) error {
	link, err := netlink.LinkByName(g.dev)
	if err != nil {
		return fmt.Errorf("wan: reply routes: %s: %w", g.dev, err)
	}
	var errs []error
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		gw, dst := g.gw4, &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if family == netlink.FAMILY_V6 {
			gw, dst = g.gw6, &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		rs, err := netlink.RouteListFiltered(family, &netlink.Route{Table: replyTable(i)}, netlink.RT_FILTER_TABLE)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		right := false
		for _, r := range rs {
			rg, _ := netip.AddrFromSlice(r.Gw)
			if r.Table != replyTable(i) {
				continue // the filter is not trusted (see activeDefault)
			}
			if r.LinkIndex == link.Attrs().Index && gw.IsValid() && rg.Unmap() == gw && (r.Dst == nil || r.Dst.IP.IsUnspecified()) {
				right = true
				continue
			}
			if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
		}
		if gw.IsValid() && !right {
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw.AsSlice(), Table: replyTable(i)}
			if err := netlink.RouteReplace(r); err != nil {
				errs = append(errs, fmt.Errorf("table %d via %s: %w", replyTable(i), gw, err))
			}
		}
		if !hasRule(family, i) {
			if err := netlink.RuleAdd(replyRule(family, i)); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("ip rule fwmark %#x lookup %d: %w", netcfg.ReplyMark(i), replyTable(i), err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wan: reply routes of %s: %w", g.dev, err)
	}
	return nil
}

func hasRule(family, i int) bool {
	rules, err := netlink.RuleList(family)
	if err != nil {
		return false
	}
	for _, r := range rules {
		if isReplyRule(r, i) {
			return true
		}
	}
	return false
}

func isReplyRule(r netlink.Rule, i int) bool {
	return r.Priority == replyPrio(i) && r.Table == replyTable(i) && r.Mark == netcfg.ReplyMark(i)
}

// removeReplyRoutes deletes the reply-routing rules and the routes of their tables for the
// n uplinks, and nothing else.
func removeReplyRoutes(n int) error {
	var errs []error
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := netlink.RuleList(family)
		if err != nil {
			errs = append(errs, err)
		}
		for i := range n {
			for _, r := range rules {
				if isReplyRule(r, i) {
					if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
						errs = append(errs, err)
					}
				}
			}
			rs, err := netlink.RouteListFiltered(family, &netlink.Route{Table: replyTable(i)}, netlink.RT_FILTER_TABLE)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, r := range rs {
				if r.Table != replyTable(i) {
					continue
				}
				if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wan: remove reply routes: %w", err)
	}
	return nil
}
