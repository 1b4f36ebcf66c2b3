package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DHCP is [dhcp]: the DHCPv4 server on the LAN (package dhcpd). It is off by default,
// because an office may already run one; on, it still refuses to serve while another
// server answers on the LAN.
type DHCP struct {
	Enabled bool `toml:"enabled"`
	// Pool is the range handed out to devices without a static lease.
	Pool AddrRange `toml:"pool"`
	// LeaseTime is how long a lease lasts (clients renew at half of it).
	LeaseTime time.Duration `toml:"lease_time"`
	// Domain is the LAN's DNS domain given to clients (option 15, and the router
	// advertisements' search list). Default: [dns] domain, the names the box answers; "": none.
	Domain string `toml:"domain"`
	// NTPServers (option 42); default the box's LAN address.
	NTPServers []Addr `toml:"ntp_servers"`
	// CheckInterval is how often the box looks for another DHCP server on the LAN.
	CheckInterval time.Duration `toml:"check_interval"`
	// NewDevicesPerHour bounds how many devices the server has never seen get an address
	// (up to a quarter of the pool at once, then this many an hour), so a device making up
	// MAC addresses cannot empty the pool. Devices with a lease, even an old one, never
	// count. Default: the pool's size per lease time, at least 30.
	NewDevicesPerHour int `toml:"new_devices_per_hour"`
	// Static leases by name ([dhcp.static.pbx]): the PBX, desk phones.
	Static map[string]*StaticLease `toml:"static"`
	// Provision are the provisioning options for phones, by vendor class or MAC prefix;
	// the first that matches a client is used.
	Provision []Provision `toml:"provision"`

	domainSet bool
}

// StaticLease is one [dhcp.static.NAME]: a device that always gets the same address.
type StaticLease struct {
	MAC      MAC    `toml:"mac"`
	Address  Addr   `toml:"address"`
	Hostname string `toml:"hostname"` // default: the entry's name
}

// Provision is one [[dhcp.provision]]: what phones of one kind are told to fetch.
type Provision struct {
	Name string `toml:"name"`
	// VendorClass matches clients whose option 60 starts with it (any case).
	VendorClass string `toml:"vendor_class"`
	// MACPrefixes match clients by their MAC's first octets (the vendor's OUI).
	MACPrefixes []MACPrefix `toml:"mac_prefixes"`
	// URL is the provisioning URL, sent in the options of URLOptions (66 and 160 by default).
	URL        string `toml:"url"`
	URLOptions []int  `toml:"url_options"`
	// TFTPServers (option 150, Cisco and others).
	TFTPServers []Addr `toml:"tftp_servers"`
	// VendorSpecific is option 43's content in hex ("01:04:c0:a8:01:0a" or "0104c0a8010a").
	VendorSpecific string `toml:"vendor_specific"`
	// NTPServers replaces [dhcp] ntp_servers for these phones (option 42).
	NTPServers []Addr `toml:"ntp_servers"`
}

// VendorBytes is option 43's content (VendorSpecific decoded); nil when there is none.
func (p Provision) VendorBytes() []byte {
	b, _ := parseHex(p.VendorSpecific)
	return b
}

func parseHex(s string) ([]byte, error) {
	return hex.DecodeString(strings.NewReplacer(":", "", "-", "", " ", "").Replace(s))
}

// AddrRange is an inclusive range of IPv4 addresses: "192.168.1.100-192.168.1.199".
type AddrRange struct{ First, Last netip.Addr }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *AddrRange) UnmarshalText(b []byte) error {
	lo, hi, ok := strings.Cut(string(b), "-")
	first, err1 := netip.ParseAddr(strings.TrimSpace(lo))
	last, err2 := netip.ParseAddr(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || !first.Is4() || !last.Is4() {
		return fmt.Errorf("%q is not a range of IPv4 addresses (like \"192.168.1.100-192.168.1.199\")", b)
	}
	if last.Less(first) {
		return fmt.Errorf("%q is not a range: %s is above %s", b, first, last)
	}
	*r = AddrRange{first, last}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r AddrRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r AddrRange) String() string {
	if !r.IsValid() {
		return ""
	}
	return r.First.String() + "-" + r.Last.String()
}

// Size is how many addresses the range holds.
func (r AddrRange) Size() uint64 {
	if !r.IsValid() {
		return 0
	}
	a, b := r.First.As4(), r.Last.As4()
	u := func(x [4]byte) uint64 { return uint64(x[0])<<24 | uint64(x[1])<<16 | uint64(x[2])<<8 | uint64(x[3]) }
	return u(b) - u(a) + 1
}

// IsValid reports whether the range is set.
func (r AddrRange) IsValid() bool { return r.First.IsValid() }

// Contains reports whether a is in the range.
func (r AddrRange) Contains(a netip.Addr) bool {
	return r.IsValid() && a.Is4() && !a.Less(r.First) && !r.Last.Less(a)
}

// MAC is an Ethernet address ("00:15:65:12:34:56"); String gives it lower case with colons.
type MAC struct{ net.HardwareAddr }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	hw, err := net.ParseMAC(string(b))
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("%q is not a MAC address (like \"00:15:65:12:34:56\")", b)
	}
	m.HardwareAddr = hw
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// MACPrefix is the first one to five octets of a MAC ("80:5e:c0"), lower case with colons.
type MACPrefix string

var macPrefixRE = regexp.MustCompile(`^[0-9a-f]{2}([:-][0-9a-f]{2}){0,4}$`)

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *MACPrefix) UnmarshalText(b []byte) error {
	s := strings.ToLower(string(b))
	if !macPrefixRE.MatchString(s) {
		return fmt.Errorf("%q is not the start of a MAC address (like \"80:5e:c0\", the vendor's first 3 octets)", b)
	}
	*p = MACPrefix(strings.ReplaceAll(s, "-", ":"))
	return nil
}

// Matches reports whether mac starts with the prefix.
func (p MACPrefix) Matches(mac net.HardwareAddr) bool {
	return strings.HasPrefix(mac.String(), string(p))
}

// RA is [ra]: router advertisements on the LAN (package ra) for the IPv6 prefixes of
// lan.addresses, with the box as DNS server. On whenever the LAN has an IPv6 address.
type RA struct {
	Enabled bool `toml:"enabled"`
	// Interval is the longest time between two unsolicited advertisements (RFC 4861's
	// MaxRtrAdvInterval); each is sent at a random time between a third of it and it.
	Interval time.Duration `toml:"interval"`
	// RouterLifetime is how long clients keep the box as their default router.
	RouterLifetime time.Duration `toml:"router_lifetime"`
	// ValidLifetime and PreferredLifetime are the advertised prefix's.
	ValidLifetime     time.Duration `toml:"valid_lifetime"`
	PreferredLifetime time.Duration `toml:"preferred_lifetime"`

	enabledSet bool
}

// RAPrefixes are the LAN's IPv6 prefixes to advertise: the /64s of lan.addresses (devices
// configure themselves only from a /64), not link-local ones.
func (c *Config) RAPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range c.LAN.Addresses {
		if a.Addr().Is6() && !a.Addr().IsLinkLocalUnicast() && a.Bits() == 64 {
			out = append(out, a.Masked())
		}
	}
	return out
}

// RAOn reports whether the box sends router advertisements.
func (c *Config) RAOn() bool { return c.RA.Enabled && len(c.RAPrefixes()) > 0 }

// BoxLAN4 is the box's IPv4 address on the LAN (the first one), with its prefix.
func (c *Config) BoxLAN4() netip.Prefix {
	for _, a := range c.LAN.Addresses {
		if a.Addr().Is4() {
			return a.Prefix
		}
	}
	return netip.Prefix{}
}

// BoxLAN6 is the box's first IPv6 address on the LAN that is not link-local.
func (c *Config) BoxLAN6() netip.Addr {
	for _, a := range c.LAN.Addresses {
		if a.Addr().Is6() && !a.Addr().IsLinkLocalUnicast() {
			return a.Addr()
		}
	}
	return netip.Addr{}
}

func (d *DHCP) setDefaults(md *toml.MetaData) {
	d.domainSet = md.IsDefined("dhcp", "domain")
	if d.LeaseTime == 0 {
		d.LeaseTime = 12 * time.Hour
	}
	if d.CheckInterval == 0 {
		d.CheckInterval = 5 * time.Minute
	}
	for i := range d.Provision {
		if d.Provision[i].URLOptions == nil {
			d.Provision[i].URLOptions = []int{66, 160}
		}
	}
	for n, s := range d.Static {
		if s.Hostname == "" && hostLabelErr(n) == "" {
			s.Hostname = strings.ToLower(n)
		}
	}
}

// hostLabelErr says why h cannot be a device's host name on the LAN (one DNS label), or "".
func hostLabelErr(h string) string {
	if strings.Contains(h, ".") || hostnameErr(h) != "" || strings.Contains(h, "_") {
		return fmt.Sprintf("%q is not a host name: use letters, digits and - only (like \"pbx\" or \"phone-12\")", h)
	}
	return ""
}

func (d *DHCP) check(c *Config, v *validator) {
	f := func(parts ...string) string { return key(append([]string{"dhcp"}, parts...)...) }
	lan := c.BoxLAN4()
	if !d.domainSet {
		d.Domain = c.DNS.Domain
	}
	if d.LeaseTime < 2*time.Minute || d.LeaseTime > 90*24*time.Hour {
		v.errf(f("lease_time"), "must be from 2m to 2160h (90 days), not %s", d.LeaseTime)
	}
	if d.CheckInterval < 10*time.Second {
		v.errf(f("check_interval"), "must be at least 10s (it is %s)", d.CheckInterval)
	}
	if d.NewDevicesPerHour < 0 || d.NewDevicesPerHour > 100_000 {
		v.errf(f("new_devices_per_hour"), "must be from 1 to 100000 (it is %d)", d.NewDevicesPerHour)
	}
	if d.Domain != "" {
		if msg := hostnameErr(d.Domain); msg != "" {
			v.errf(f("domain"), "%s", msg)
		}
	}
	checkV4List(v, f("ntp_servers"), d.NTPServers)
	if !d.Pool.IsValid() {
		if d.Enabled && lan.IsValid() {
			v.errf(f("pool"), "the DHCP server needs a pool of addresses to hand out (like %q)", suggestPool(lan))
		}
	} else if lan.IsValid() {
		d.checkPool(c, v, lan)
	}
	d.checkStatic(c, v, lan)
	d.checkProvision(v)
}

// NewDevicesRate is new_devices_per_hour, or its default for the pool and lease time.
func (d *DHCP) NewDevicesRate() int {
	if d.NewDevicesPerHour > 0 {
		return d.NewDevicesPerHour
	}
	n := 30
	if d.Pool.IsValid() && d.LeaseTime > 0 {
		n = max(n, int(d.Pool.Size()*uint64(time.Hour)/uint64(d.LeaseTime)))
	}
	return n
}

func (d *DHCP) checkPool(c *Config, v *validator, lan netip.Prefix) {
	field := key("dhcp", "pool")
	net4 := lan.Masked()
	last := Broadcast(net4)
	switch {
	case !net4.Contains(d.Pool.First) || !net4.Contains(d.Pool.Last):
		v.errf(field, "%s is not inside the LAN subnet %s (like %q)", d.Pool, net4, suggestPool(lan))
	case d.Pool.First == net4.Addr() || d.Pool.Last == last:
		v.errf(field, "%s includes the subnet's network or broadcast address (%s, %s)", d.Pool, net4.Addr(), last)
	case d.Pool.Contains(lan.Addr()):
		v.errf(field, "%s includes the box's own address %s", d.Pool, lan.Addr())
	case d.Pool.Contains(c.PBX.Address.Addr):
		v.errf(field, "%s includes the PBX's address %s (give the PBX a static lease outside the pool)", d.Pool, c.PBX.Address)
	}
}

// suggestPool is a pool to propose for the LAN lan: the addresses from .100 to .199 of a
// /24, or the upper half of another subnet.
func suggestPool(lan netip.Prefix) string {
	n := lan.Masked()
	b := n.Addr().As4()
	if n.Bits() == 24 {
		return fmt.Sprintf("%d.%d.%d.100-%d.%d.%d.199", b[0], b[1], b[2], b[0], b[1], b[2])
	}
	size := uint32(1) << (32 - n.Bits())
	base := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return fmt.Sprintf("%s-%s", u32Addr(base+size/2), u32Addr(base+size-2))
}

func u32Addr(x uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

// Broadcast is the last address of an IPv4 network.
func Broadcast(n netip.Prefix) netip.Addr {
	b := n.Masked().Addr().As4()
	x := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return u32Addr(x | (1<<(32-n.Bits()) - 1))
}

func (d *DHCP) checkStatic(c *Config, v *validator, lan netip.Prefix) {
	macs, addrs, hosts := map[string]string{}, map[netip.Addr]string{}, map[string]string{}
	for _, n := range SortedNames(d.Static) {
		s := d.Static[n]
		f := func(field string) string { return key("dhcp", "static", n, field) }
		if msg := nameErr(n); msg != "" {
			v.errf(key("dhcp", "static", n), "%s", msg)
		}
		if s.MAC.HardwareAddr == nil {
			v.errf(f("mac"), "the device's MAC address is required (like \"00:15:65:12:34:56\")")
		} else if other, ok := macs[s.MAC.String()]; ok {
			v.errf(f("mac"), "%s already has a static lease in dhcp.static.%s", s.MAC, other)
		} else {
			macs[s.MAC.String()] = n
		}
		switch a := s.Address.Addr; {
		case !a.IsValid():
			v.errf(f("address"), "the address to give the device is required")
		case !lan.IsValid() || !lan.Masked().Contains(a) || a == lan.Masked().Addr() || a == Broadcast(lan.Masked()):
			v.errf(f("address"), "%s is not a host address in the LAN subnet %s", a, lan.Masked())
		case c.isBoxLANAddr(a):
			v.errf(f("address"), "%s is the box's own address", a)
		default:
			if other, ok := addrs[a]; ok {
				v.errf(f("address"), "%s is already the static lease of dhcp.static.%s", a, other)
			}
			addrs[a] = n
		}
		if s.Hostname == "" {
			continue
		}
		if msg := hostLabelErr(s.Hostname); msg != "" {
			v.errf(f("hostname"), "%s", msg)
		} else if other, ok := hosts[strings.ToLower(s.Hostname)]; ok {
			v.errf(f("hostname"), "%q is already the host name of dhcp.static.%s", s.Hostname, other)
		} else {
			hosts[strings.ToLower(s.Hostname)] = n
		}
	}
}

func (d *DHCP) checkProvision(v *validator) {
	names := map[string]bool{}
	for i, p := range d.Provision {
		f := func(field string) string { return key("dhcp", "provision", field) }
		which := fmt.Sprintf("provision %d (%q)", i+1, p.Name)
		switch {
		case !regexp.MustCompile(`^[a-z0-9_-]{1,32}$`).MatchString(p.Name):
			v.errf(f("name"), "provision %d: name %q must be 1-32 of a-z, 0-9, _ and -", i+1, p.Name)
		case names[p.Name]:
			v.errf(f("name"), "provision %q is listed twice", p.Name)
		}
		names[p.Name] = true
		if p.VendorClass == "" && len(p.MACPrefixes) == 0 {
			v.errf(key("dhcp", "provision"), "%s: say which phones it is for: vendor_class, mac_prefixes or both", which)
		}
		if p.URL != "" {
			if msg := provisionURLErr(p.URL); msg != "" {
				v.errf(f("url"), "%s: %s", which, msg)
			}
		}
		for _, o := range p.URLOptions {
			if o != 66 && o != 160 {
				v.errf(f("url_options"), "%s: %d is not a provisioning URL option: use 66, 160 or both", which, o)
			}
		}
		if p.VendorSpecific != "" {
			if b, err := parseHex(p.VendorSpecific); err != nil || len(b) == 0 || len(b) > 255 {
				v.errf(f("vendor_specific"), "%s: %q is not 1 to 255 bytes in hex (like \"01:04:c0:a8:01:0a\")", which, p.VendorSpecific)
			}
		}
		checkV4List(v, f("tftp_servers"), p.TFTPServers)
		checkV4List(v, f("ntp_servers"), p.NTPServers)
		if p.URL == "" && len(p.TFTPServers) == 0 && p.VendorSpecific == "" && len(p.NTPServers) == 0 {
			v.errf(key("dhcp", "provision"), "%s gives the phones nothing: set url, tftp_servers, vendor_specific or ntp_servers", which)
		}
	}
}

// provisionURLErr says why u cannot be a phone's provisioning URL, or "".
func provisionURLErr(u string) string {
	pu, err := url.Parse(u)
	switch {
	case err != nil || pu.Scheme == "":
		return fmt.Sprintf("%s is not a URL (like \"http://192.168.1.10/provisioning/\")", shortQuote(u))
	case pu.Scheme != "http" && pu.Scheme != "https" && pu.Scheme != "tftp" && pu.Scheme != "ftp":
		return fmt.Sprintf("%s: phones fetch their settings over http, https, tftp or ftp, not %q", shortQuote(u), pu.Scheme)
	case pu.Host == "":
		return fmt.Sprintf("%s has no server (like \"http://192.168.1.10/provisioning/\")", shortQuote(u))
	}
	return ""
}

func checkV4List(v *validator, field string, as []Addr) {
	for _, a := range as {
		if !a.Is4() || a.IsUnspecified() || a.IsMulticast() {
			v.errf(field, "%s is not an IPv4 host address", a)
		}
	}
}

func (r *RA) setDefaults(md *toml.MetaData) {
	r.enabledSet = md.IsDefined("ra", "enabled")
	if !r.enabledSet {
		r.Enabled = true
	}
	if r.Interval == 0 {
		r.Interval = 200 * time.Second
	}
	if r.RouterLifetime == 0 {
		r.RouterLifetime = 30 * time.Minute
	}
	if r.ValidLifetime == 0 {
		r.ValidLifetime = 24 * time.Hour
	}
	if r.PreferredLifetime == 0 {
		r.PreferredLifetime = 4 * time.Hour
	}
}

func (r *RA) check(c *Config, v *validator) {
	f := func(field string) string { return key("ra", field) }
	// RFC 4861 6.2.1: MaxRtrAdvInterval from 4s to 1800s; the router lifetime at most 9000s
	// and not below the interval (0 would say "not a default router").
	if r.Interval < 4*time.Second || r.Interval > 1800*time.Second {
		v.errf(f("interval"), "must be from 4s to 30m (it is %s)", r.Interval)
	}
	if r.RouterLifetime < r.Interval || r.RouterLifetime > 9000*time.Second {
		v.errf(f("router_lifetime"), "must be from the interval (%s) to 2h30m (it is %s)", r.Interval, r.RouterLifetime)
	}
	if r.PreferredLifetime > r.ValidLifetime {
		v.errf(f("preferred_lifetime"), "%s is longer than valid_lifetime (%s)", r.PreferredLifetime, r.ValidLifetime)
	}
	if r.ValidLifetime < 2*time.Hour {
		// RFC 4862 5.5.3 e): clients ignore shorter lifetimes for addresses they have.
		v.errf(f("valid_lifetime"), "must be at least 2h (it is %s)", r.ValidLifetime)
	}
	if !r.Enabled {
		return
	}
	for _, a := range c.LAN.Addresses {
		if !a.Addr().Is6() || a.Addr().IsLinkLocalUnicast() || a.Bits() == 64 {
			continue
		}
		msg := fmt.Sprintf("%s is not a /64: devices configure themselves (SLAAC) only from a /64, so it is not advertised", a.Masked())
		if r.enabledSet {
			v.errf("lan.addresses", "%s; give the LAN a /64 or set ra.enabled = false", msg)
		} else {
			c.Warnings = append(c.Warnings, "router advertisements: "+msg)
		}
	}
	if len(c.RAPrefixes()) == 0 && r.enabledSet {
		v.errf(f("enabled"), "router advertisements need an IPv6 /64 address of the box in lan.addresses (like \"fd00:1::1/64\")")
	}
}
