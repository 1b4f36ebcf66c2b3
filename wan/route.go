package wan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ActiveMetric is the metric of the default route the wan part points at the active uplink.
// It sits below both uplinks' own default routes (100 primary, 200 backup, set by netcfg),
// which stay for the probes bound to each device. Switching is one atomic route replace, in
// the main table, so it works without policy routing in the kernel; a config reload that
// rewrites the uplinks' own routes never undoes it.
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
	var reply, orig netlink.ConntrackFilter
	if err := reply.AddIP(netlink.ConntrackReplyDstIP, addr.AsSlice()); err != nil {
		return 0, err
	}
	if err := orig.AddIP(netlink.ConntrackOrigDstIP, addr.AsSlice()); err != nil {
		return 0, err
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, &reply, &orig)
	if err != nil {
		return n, fmt.Errorf("wan: delete conntrack entries of %s: %w", addr, err)
	}
	return n, nil
}
