package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
)

// Route metrics of the default routes: both uplinks keep one, so that probes bound to the
// standby device find a route; the lower metric carries the office's traffic.
const (
	MetricPrimary = 100
	MetricBackup  = 200
)

// ApplyLinks brings the box's interfaces to the configured state: links up, the LAN's and the
// static uplinks' addresses (others removed), a default route per static uplink, forwarding on
// and loose reverse-path filtering on the uplinks (a standby uplink's replies arrive on it).
// A missing uplink interface (a modem not plugged in) is reported and skipped.
func ApplyLinks(c *config.Config) (warnings []string, err error) {
	for _, s := range []struct{ path, val string }{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv6/conf/all/forwarding", "1"},
	} {
		if err := sysctl(s.path, s.val); err != nil {
			return nil, err
		}
	}
	lan, err := netlink.LinkByName(c.LAN.Interface)
	if err != nil {
		return nil, fmt.Errorf("netcfg: LAN interface %s: %w", c.LAN.Interface, err)
	}
	if err := reconcileLink(lan, c.LAN.Addresses); err != nil {
		return nil, err
	}
	for _, u := range c.Uplink.All() {
		link, err := netlink.LinkByName(u.Interface)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("uplink %s: interface %s not found: %v", u.Name, u.Interface, err))
			continue
		}
		if err := sysctl("net/ipv4/conf/"+u.Interface+"/rp_filter", "2"); err != nil {
			return nil, err
		}
		if u.Mode != "static" {
			if err := netlink.LinkSetUp(link); err != nil {
				return nil, fmt.Errorf("netcfg: set %s up: %w", u.Interface, err)
			}
			continue
		}
		addrs := []config.Prefix{u.Address}
		if u.Address6.IsValid() {
			addrs = append(addrs, u.Address6)
		}
		if err := reconcileLink(link, addrs); err != nil {
			return nil, err
		}
		metric := MetricPrimary
		if u.Role == "backup" {
			metric = MetricBackup
		}
		for _, gw := range []config.Addr{u.Gateway, u.Gateway6} {
			if !gw.IsValid() {
				continue
			}
			if err := defaultRoute(link, gw.Addr, metric); err != nil {
				return nil, fmt.Errorf("netcfg: default route via %s on %s: %w", gw, u.Interface, err)
			}
		}
	}
	return warnings, nil
}

// reconcileLink sets the link up and makes its global addresses exactly want.
func reconcileLink(link netlink.Link, want []config.Prefix) error {
	name := link.Attrs().Name
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("netcfg: set %s up: %w", name, err)
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("netcfg: list addresses of %s: %w", name, err)
	}
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		wanted[w.Prefix] = true
	}
	for _, a := range have {
		p := toPrefix(a.IPNet)
		if a.Scope != unix.RT_SCOPE_UNIVERSE || wanted[p] {
			delete(wanted, p)
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("netcfg: remove %s from %s: %w", p, name, err)
		}
	}
	for _, w := range want {
		if !wanted[w.Prefix] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: w.Addr().AsSlice(), Mask: net.CIDRMask(w.Bits(), w.Addr().BitLen())}}
		if err := netlink.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("netcfg: add %s to %s: %w", w, name, err)
		}
	}
	return nil
}

func defaultRoute(link netlink.Link, gw netip.Addr, metric int) error {
	dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
	if gw.Is6() {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return netlink.RouteReplace(&netlink.Route{
		LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw.AsSlice(), Priority: metric,
	})
}

func toPrefix(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits)
}

// sysctl writes a per-namespace networking sysctl.
func sysctl(path, val string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys", path), []byte(val), 0o644); err != nil {
		return fmt.Errorf("netcfg: sysctl %s=%s: %w", path, val, err)
	}
	return nil
}
