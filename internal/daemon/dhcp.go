package daemon

import (
	"fmt"
	"net/netip"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/dhcpd"
	"github.com/officeedge/appliance/internal/ra"
)

// dhcpSpec is the LAN's DHCP server: off unless [dhcp] enabled, and silent while another
// server answers on the LAN. Its leases live in the state directory.
func dhcpSpec() partSpec {
	return partSpec{name: "dhcp",
		make: func(a *App) (runner, error) {
			return orNil(dhcpd.New(a.Config(), dhcpd.Options{StateDir: a.StateDir, Alerts: a.Alerts, Bus: a.Bus, Log: a.Log.With("part", "dhcp")}))
		},
		startKey: func(c *config.Config) string { return fmt.Sprint(c.DHCP.Enabled, c.LAN.Interface) }}
}

// raSpec is the LAN's router advertisements: on while the LAN has an IPv6 /64 and [ra] is not off.
func raSpec() partSpec {
	return partSpec{name: "ra",
		make:     func(a *App) (runner, error) { return orNil(ra.New(a.Config(), a.Log.With("part", "ra")), nil) },
		startKey: func(c *config.Config) string { return fmt.Sprint(c.RAOn(), c.LAN.Interface) }}
}

// dhcpServer is the DHCP part in force, or nil when it is off (a reload may replace it).
func (a *App) dhcpServer() *dhcpd.Server {
	if a.parts == nil {
		return nil
	}
	a.parts.mu.Lock()
	defer a.parts.mu.Unlock()
	s, _ := a.parts.on["dhcp"].runner().(*dhcpd.Server)
	return s
}

// dhcpStatus is the DHCP server's state and leases for the page; false when it is off.
func (a *App) dhcpStatus() (dhcpd.Status, bool) {
	s := a.dhcpServer()
	if s == nil {
		return dhcpd.Status{}, false
	}
	return s.Status(), true
}

// dhcpCounters are the DHCP server's counters for /metrics; false when it is off.
func (a *App) dhcpCounters() (dhcpd.Counters, bool) {
	s := a.dhcpServer()
	if s == nil {
		return dhcpd.Counters{}, false
	}
	return s.Counters(), true
}

// dhcpHostnames are the LAN devices' names for the DNS forwarder; none when DHCP is off.
// The server gives them from a snapshot, without its lock, and never a name a device may
// not claim (wpad, the box's, the PBX's, a static lease's: dhcpd/names.go).
func (a *App) dhcpHostnames() map[string]netip.Addr {
	if s := a.dhcpServer(); s != nil {
		return s.Hostnames()
	}
	return nil
}
