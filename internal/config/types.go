package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Addr is an IP address written as a TOML string; its parse error is the one a person reads.
type Addr struct{ netip.Addr }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Addr) UnmarshalText(b []byte) error {
	ip, err := netip.ParseAddr(string(b))
	if err != nil || ip.Zone() != "" {
		return fmt.Errorf("%q is not an IP address", b)
	}
	a.Addr = ip.Unmap()
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (a Addr) MarshalText() ([]byte, error) { return a.Addr.MarshalText() }

// Prefix is an address with a prefix length ("192.0.2.0/24", or "192.168.1.1/24" for an interface).
// A bare address is taken as a single host (/32 or /128).
type Prefix struct{ netip.Prefix }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Prefix) UnmarshalText(b []byte) error {
	s := string(b)
	if !strings.Contains(s, "/") {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("%q is not an IP address or network (like 192.0.2.0/24)", s)
		}
		ip = ip.Unmap()
		p.Prefix = netip.PrefixFrom(ip, ip.BitLen())
		return nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("%q is not an IP network (like 192.0.2.0/24)", s)
	}
	if pfx.Addr().Is4In6() || pfx.Addr().Zone() != "" {
		return fmt.Errorf("%q is not an IP network (like 192.0.2.0/24)", s)
	}
	p.Prefix = pfx
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (p Prefix) MarshalText() ([]byte, error) { return p.Prefix.MarshalText() }

// PortRange is one port ("5060") or an inclusive range ("9000-10999").
type PortRange struct{ Lo, Hi uint16 }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *PortRange) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	lo, hi, isRange := strings.Cut(s, "-")
	l, err1 := parsePort(lo)
	h := l
	var err2 error
	if isRange {
		h, err2 = parsePort(hi)
	}
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%q is not a port (1-65535) or port range (like 9000-10999)", s)
	}
	if h < l {
		return fmt.Errorf("%q is not a port range: %d is above %d", s, l, h)
	}
	*r = PortRange{l, h}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// IsZero reports whether the range is unset (port 0 means "off").
func (r PortRange) IsZero() bool { return r.Lo == 0 }

// Overlaps reports whether the two ranges share a port.
func (r PortRange) Overlaps(o PortRange) bool { return r.Lo <= o.Hi && o.Lo <= r.Hi }

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad port")
	}
	return uint16(n), nil
}

// Port is a single TCP/UDP port number; 0 means the service is off.
type Port uint16

// Range turns a port into a one-port range.
func (p Port) Range() PortRange { return PortRange{uint16(p), uint16(p)} }

// Source says who may reach a forwarded PBX service from the internet.
type Source string

// Sources a PBX service can be opened to.
const (
	FromAnywhere Source = "anywhere" // any address on the internet
	FromTrusted  Source = "trusted"  // the trusted SIP peers only
	FromAdmin    Source = "admin"    // the admin networks only
	FromNobody   Source = "nobody"   // closed
	FromVPN      Source = "vpn"      // the VPN's peers only, through the tunnel (not the internet)
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Source) UnmarshalText(b []byte) error {
	switch v := Source(b); v {
	case FromAnywhere, FromTrusted, FromAdmin, FromNobody, FromVPN:
		*s = v
		return nil
	}
	return fmt.Errorf("%q is not one of anywhere, trusted, admin, vpn, nobody", b)
}

// Protocol is "udp" or "tcp".
type Protocol string

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Protocol) UnmarshalText(b []byte) error {
	switch v := Protocol(b); v {
	case "udp", "tcp":
		*p = v
		return nil
	}
	return fmt.Errorf("%q is not a protocol: use udp or tcp", b)
}

// AddrMode is how an uplink gets its address.
type AddrMode string

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *AddrMode) UnmarshalText(b []byte) error {
	switch v := AddrMode(b); v {
	case "static", "dhcp":
		*m = v
		return nil
	}
	return fmt.Errorf("%q is not an address mode: use static or dhcp", b)
}
