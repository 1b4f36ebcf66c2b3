package sipguard

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ForgetFlows returns a function deleting the connection tracking entries a source started
// (nil handle: the caller's network namespace), so an established UDP flow, kept alive by
// SIP keep-alives, cannot carry on past a block.
func ForgetFlows(h *netlink.Handle) func(netip.Addr) error {
	return func(a netip.Addr) error {
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(netlink.ConntrackOrigSrcIP, net.IP(a.AsSlice())); err != nil {
			return err
		}
		fam := netlink.InetFamily(unix.AF_INET)
		if a.Is6() {
			fam = unix.AF_INET6
		}
		var err error
		if h == nil {
			_, err = netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f)
		} else {
			_, err = h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f)
		}
		return err
	}
}
