package dnsfwd

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/officeedge/appliance/wan"
)

// The box's own clients ask the forwarder first (its IPv4 LAN address), then the active
// uplink's resolvers (learned before configured), then resolv.conf's, each once; an uplink
// without an IPv4 address gets no IPv4 resolver, and without wan only resolv.conf is left.
func TestBoxServers(t *testing.T) {
	a := netip.MustParseAddr
	ap := func(ss ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, s := range ss {
			out = append(out, netip.AddrPortFrom(a(s), 53))
		}
		return out
	}
	lan := []netip.Addr{a("192.168.50.1"), a("2001:db8:50::1")}
	configured := map[wan.Role][]netip.Addr{wan.Primary: {a("198.51.100.53")}, wan.Backup: {a("203.0.113.53")}}
	system := []netip.Addr{a("9.9.9.9"), a("198.51.100.53")}
	onLTE := &wan.Status{Active: wan.Backup, Uplinks: []wan.UplinkStatus{
		{Role: wan.Primary, Address: "198.51.100.2", DNS: []netip.Addr{a("198.51.100.1")}},
		{Role: wan.Backup, Address: "203.0.113.2", DNS: []netip.Addr{a("203.0.113.1")}}}}
	noV4 := &wan.Status{Active: wan.Primary, Uplinks: []wan.UplinkStatus{{Role: wan.Primary}}}
	for _, tc := range []struct {
		name string
		fwd  []netip.Addr
		st   *wan.Status
		want []netip.AddrPort
	}{
		{"forwarder, then the modem's resolvers", lan, onLTE, ap("192.168.50.1", "203.0.113.1", "203.0.113.53", "9.9.9.9", "198.51.100.53")},
		{"no forwarder", nil, onLTE, ap("203.0.113.1", "203.0.113.53", "9.9.9.9", "198.51.100.53")},
		{"the active uplink has no IPv4 address", nil, noV4, ap("9.9.9.9", "198.51.100.53")},
		{"no wan", lan, nil, ap("192.168.50.1", "9.9.9.9", "198.51.100.53")},
	} {
		if got := BoxServers(tc.fwd, tc.st, configured, system); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
