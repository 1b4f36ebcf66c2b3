package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

func key(parts ...string) string { return toml.Key(parts).String() }

// SortedNames returns a map's keys in order, so that generated rules are stable.
func SortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Config) applyDefaults(md *toml.MetaData) {
	if c.Site == "" {
		c.Site = "Office"
	}
	for role, u := range map[string]*Uplink{"primary": c.Uplink.Primary, "backup": c.Uplink.Backup} {
		if u == nil {
			continue
		}
		u.Role = role
		u.budgetDefaults(md)
		if u.Name == "" {
			u.Name = role
		}
		if u.Mode == "" {
			u.Mode = "dhcp"
			if u.Address.IsValid() {
				u.Mode = "static"
			}
		}
	}
	p := &c.PBX
	if !md.IsDefined("pbx", "sip_port") {
		p.SIPPort = 5060
	}
	if !md.IsDefined("pbx", "sip_transports") {
		p.SIPTransports = []Protocol{"udp", "tcp"}
	}
	if !md.IsDefined("pbx", "sip_tls_port") {
		p.SIPTLSPort = 5061
	}
	if p.TunnelFrom == "" {
		p.TunnelFrom = FromAnywhere
	}
	if p.RTPFrom == "" {
		p.RTPFrom = FromAnywhere
	}
	if p.WebFrom == "" {
		p.WebFrom = FromAdmin
	}
	for _, s := range c.sections() {
		s.setDefaults(md)
	}
	if !md.IsDefined("admin", "ssh_port") {
		c.Admin.SSHPort = 22
	}
	if !md.IsDefined("admin", "web_ports") {
		c.Admin.WebPorts = []Port{80, 443}
	}
	// One /8 of IPv4 or /32 of IPv6, all networks together: an office's admins or providers
	// never need more, and two /1s must not pass where a /0 is refused.
	if !md.IsDefined("admin", "widest4") {
		c.Admin.Widest4 = 8
	}
	if !md.IsDefined("admin", "widest6") {
		c.Admin.Widest6 = 32
	}
	if !md.IsDefined("pbx", "sip_widest4") {
		c.PBX.SIPWidest4 = 8
	}
	if !md.IsDefined("pbx", "sip_widest6") {
		c.PBX.SIPWidest6 = 32
	}
	for _, n := range SortedNames(c.SIPPeers) {
		if c.SIPPeers[n].Kind == "" {
			c.SIPPeers[n].Kind = "trunk"
		}
	}
	for _, n := range SortedNames(c.Forward) {
		f := c.Forward[n]
		if f.ToPort == 0 {
			f.ToPort = Port(f.Ports.Lo)
		}
	}
}

// subnet is a network the box is attached to, with the field that declared it.
type subnet struct {
	field string
	net   netip.Prefix
}

func (c *Config) validate(v *validator) {
	var subnets []subnet
	ifaces := map[string]string{}
	useIface := func(field, name string) {
		if msg := ifaceNameErr(name); msg != "" {
			v.errf(field, "%s", msg)
			return
		}
		if other, ok := ifaces[name]; ok {
			v.errf(field, "interface %q is already used by %s", name, other)
		}
		ifaces[name] = field
	}

	// LAN
	useIface("lan.interface", c.LAN.Interface)
	if len(c.LAN.Addresses) == 0 {
		v.errf("lan.addresses", "at least one address of the box on the LAN is required (like \"192.168.1.1/24\")")
	}
	has4 := false
	for _, a := range c.LAN.Addresses {
		has4 = has4 || a.Addr().Is4()
		if hostAddrErr(a.Prefix) != "" {
			v.errf("lan.addresses", "%s: %s", a, hostAddrErr(a.Prefix))
		}
		subnets = append(subnets, subnet{"lan.addresses", a.Masked()})
	}
	if len(c.LAN.Addresses) > 0 && !has4 {
		v.errf("lan.addresses", "an IPv4 address is required")
	}

	// Uplinks
	if c.Uplink.Primary == nil {
		v.errf("uplink", "uplink.primary is required (the fixed line)")
	}
	if c.Uplink.Backup == nil {
		c.Warnings = append(c.Warnings, "no backup uplink is configured: when the fixed line fails the office is offline")
	}
	for _, u := range c.Uplink.All() {
		f := func(field string) string { return key("uplink", u.Role, field) }
		useIface(f("interface"), u.Interface)
		switch u.Mode {
		case "static":
			if !u.Address.IsValid() {
				v.errf(f("address"), "a static uplink needs its address with prefix length (like \"198.51.100.2/29\")")
			} else if !u.Address.Addr().Is4() {
				v.errf(f("address"), "%s is not an IPv4 address: IPv6 goes in address6", u.Address)
			} else if msg := hostAddrErr(u.Address.Prefix); msg != "" {
				v.errf(f("address"), "%s: %s", u.Address, msg)
			} else {
				subnets = append(subnets, subnet{f("address"), u.Address.Masked()})
			}
			if !u.Gateway.IsValid() {
				v.errf(f("gateway"), "a static uplink needs a gateway")
			} else if u.Address.IsValid() && !u.Address.Contains(u.Gateway.Addr) {
				v.errf(f("gateway"), "%s is outside the uplink's subnet %s", u.Gateway, u.Address.Masked())
			} else if u.Gateway.Addr == u.Address.Addr() {
				v.errf(f("gateway"), "%s is the box's own address", u.Gateway)
			}
		case "dhcp":
			if u.Address.IsValid() || u.Gateway.IsValid() {
				v.errf(f("mode"), "mode is dhcp but a static address or gateway is set: choose one")
			}
		}
		if u.Address6.IsValid() {
			if !u.Address6.Addr().Is6() {
				v.errf(f("address6"), "%s is not an IPv6 address", u.Address6)
			} else {
				subnets = append(subnets, subnet{f("address6"), u.Address6.Masked()})
				if u.Gateway6.IsValid() && !u.Address6.Contains(u.Gateway6.Addr) && !u.Gateway6.IsLinkLocalUnicast() {
					v.errf(f("gateway6"), "%s is neither in %s nor link-local", u.Gateway6, u.Address6.Masked())
				}
			}
		}
	}

	// Overlapping subnets make routing ambiguous: say which two fields clash.
	for i := range subnets {
		for j := i + 1; j < len(subnets); j++ {
			if subnets[i].net.Overlaps(subnets[j].net) {
				v.errf(subnets[j].field, "subnet %s overlaps %s of %s", subnets[j].net, subnets[i].net, subnets[i].field)
			}
		}
	}

	c.validateSite(v)
	c.validatePBX(v)
	c.validatePeers(v)
	c.validateForwards(v)
	c.checkManagementPorts(v)
	nets := c.networkFields()
	for _, field := range SortedNames(nets) {
		checkHostBits(v, field, nets[field])
	}
	c.checkAdminWidth(v)
	c.checkSIPWidth(v)
	checkWidths(v, "admin.widest4", "admin.widest6", c.Admin.Widest4, c.Admin.Widest6)
	checkWidths(v, "pbx.sip_widest4", "pbx.sip_widest6", c.PBX.SIPWidest4, c.PBX.SIPWidest6)
	for _, s := range c.sections() {
		s.check(c, v)
	}
}

// hostAddrErr says why p cannot be an interface address, or "".
func hostAddrErr(p netip.Prefix) string {
	switch {
	case p.Bits() == p.Addr().BitLen():
		return "give the subnet's prefix length too (like 192.168.1.1/24)"
	case p.Addr() == p.Masked().Addr() && p.Bits() < p.Addr().BitLen()-1:
		return "this is the network's own address, not an address for the box"
	}
	return ""
}

func (c *Config) inLAN(a netip.Addr) bool {
	for _, s := range c.LAN.Subnets() {
		if s.Contains(a) {
			return true
		}
	}
	return false
}

func (c *Config) isBoxLANAddr(a netip.Addr) bool {
	for _, s := range c.LAN.Addresses {
		if s.Addr() == a {
			return true
		}
	}
	return false
}

func (c *Config) validatePBX(v *validator) {
	p := c.PBX
	switch {
	case !p.Address.IsValid():
		v.errf("pbx.address", "the PBX's LAN address is required")
	case !p.Address.Is4():
		v.errf("pbx.address", "%s is not an IPv4 address: IPv6 goes in address6", p.Address)
	case !c.inLAN(p.Address.Addr):
		v.errf("pbx.address", "%s is not on the LAN (%s)", p.Address, prefixList(c.LAN.Subnets()))
	case c.isBoxLANAddr(p.Address.Addr):
		v.errf("pbx.address", "%s is the box's own address", p.Address)
	}
	if p.Address6.IsValid() && (!p.Address6.Is6() || !c.inLAN(p.Address6.Addr)) {
		v.errf("pbx.address6", "%s is not an IPv6 address on the LAN (%s)", p.Address6, prefixList(c.LAN.Subnets()))
	}
	if len(p.SIPTransports) == 0 && p.SIPPort != 0 {
		v.errf("pbx.sip_transports", "name at least one of udp, tcp (or set sip_port = 0 to close plain SIP)")
	}
	// Two services on one port would forward one of them to the wrong place.
	type svc struct {
		field string
		proto Protocol
		r     PortRange
	}
	var svcs []svc
	add := func(field string, r PortRange, protos ...Protocol) {
		if r.IsZero() {
			return
		}
		for _, pr := range protos {
			svcs = append(svcs, svc{field, pr, r})
		}
	}
	add("pbx.sip_port", p.SIPPort.Range(), p.SIPTransports...)
	add("pbx.sip_tls_port", p.SIPTLSPort.Range(), "tcp")
	add("pbx.tunnel_port", p.TunnelPort.Range(), "tcp", "udp")
	add("pbx.rtp_ports", p.RTPPorts, "udp")
	for _, w := range p.WebPorts {
		add("pbx.web_ports", w.Range(), "tcp")
	}
	for _, n := range SortedNames(c.Forward) {
		f := c.Forward[n]
		add(key("forward", n, "ports"), f.Ports, f.Protocol)
	}
	for i := range svcs {
		for j := i + 1; j < len(svcs); j++ {
			a, b := svcs[i], svcs[j]
			if a.proto == b.proto && a.r.Overlaps(b.r) && a.field != b.field {
				v.errf(b.field, "%s port %s is already forwarded by %s", b.proto, b.r, a.field)
			}
		}
	}
}

func (c *Config) validatePeers(v *validator) {
	anywhere := false
	for _, n := range SortedNames(c.SIPPeers) {
		peer := c.SIPPeers[n]
		f := func(field string) string { return key("sip_peers", n, field) }
		if msg := nameErr(n); msg != "" {
			v.errf(key("sip_peers", n), "%s", msg)
		}
		if peer.Kind != "trunk" && peer.Kind != "office" {
			v.errf(f("kind"), "%q is not a peer kind: use trunk or office", peer.Kind)
		}
		if len(peer.Networks) == 0 && len(peer.Hosts) == 0 {
			v.errf(f("networks"), "list the peer's addresses or networks, or its host names in hosts")
		}
		checkHosts(v, f("hosts"), peer.Hosts)
		for _, nw := range peer.Networks {
			if nw.Bits() == 0 {
				anywhere = true
				if !c.PBX.AllowSIPFromAnywhere {
					v.errf(f("networks"), "%s opens SIP to the whole internet, the most common way PBXs get hacked; list your providers' networks, or set pbx.allow_sip_from_anywhere = true if you really mean it", nw)
				}
			}
		}
	}
	if c.PBX.AllowSIPFromAnywhere {
		anywhere = true
	}
	if anywhere && c.PBX.AllowSIPFromAnywhere {
		c.Warnings = append(c.Warnings, "SIP is open to the whole internet (pbx.allow_sip_from_anywhere = true): brute-force and toll-fraud bots will reach the PBX")
	}
	if len(c.SIPPeers) == 0 && !c.PBX.AllowSIPFromAnywhere && c.PBX.SIPPort != 0 {
		c.Warnings = append(c.Warnings, "no trusted SIP peers are configured: SIP from the internet is closed")
	}
	checkHosts(v, "admin.hosts", c.Admin.Hosts)
	for _, nw := range c.Admin.Networks {
		if nw.Bits() == 0 {
			v.errf("admin.networks", "%s would open SSH and management to the whole internet; list the admins' own networks", nw)
		}
	}
	if len(c.Admin.WebPorts) > 0 && c.Admin.SSHPort == 0 && len(c.Admin.Networks) == 0 && len(c.Admin.Hosts) == 0 {
		c.Warnings = append(c.Warnings, "no admin networks: the box is managed from the LAN only")
	}
}

// names of forwards become nft set names: keep them plain.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func (c *Config) validateForwards(v *validator) {
	for _, n := range SortedNames(c.Forward) {
		fw := c.Forward[n]
		f := func(field string) string { return key("forward", n, field) }
		if !nameRE.MatchString(n) {
			v.errf(key("forward", n), "name %q: use letters, digits, _ and - only (at most 32)", n)
		}
		if fw.Protocol == "" {
			v.errf(f("protocol"), "protocol is required: udp or tcp")
		}
		if fw.Ports.IsZero() {
			v.errf(f("ports"), "ports is required (like \"51820\" or \"8000-8010\")")
		}
		if !fw.To.IsValid() {
			v.errf(f("to"), "the LAN host to forward to is required")
		} else if !fw.To.Is4() || !c.inLAN(fw.To.Addr) || c.isBoxLANAddr(fw.To.Addr) {
			v.errf(f("to"), "%s is not an IPv4 host on the LAN (%s)", fw.To, prefixList(c.LAN.Subnets()))
		}
		if fw.ToPort != 0 && fw.Ports.Lo != fw.Ports.Hi && uint16(fw.ToPort) != fw.Ports.Lo {
			v.errf(f("to_port"), "a port range is forwarded to the same ports; to_port only goes with a single port")
		}
		if len(fw.From) == 0 {
			v.errf(f("from"), "say who may use this forward (networks, or \"0.0.0.0/0\" for anyone)")
		}
	}
}

func prefixList(ps []Prefix) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}

// SIPNetworks are the networks allowed to send SIP to the PBX, in a stable order.
func (c *Config) SIPNetworks() []Prefix {
	var out []Prefix
	for _, n := range SortedNames(c.SIPPeers) {
		out = append(out, c.SIPPeers[n].Networks...)
	}
	return out
}

// String describes an uplink for logs.
func (u *Uplink) String() string { return fmt.Sprintf("%s (%s, %s)", u.Name, u.Role, u.Interface) }

// maxHosts bounds the names one list may hold: each is looked up and followed.
const maxHosts = 16

// checkHosts checks a list of host names trusted by what they resolve to.
func checkHosts(v *validator, field string, hosts []string) {
	if len(hosts) > maxHosts {
		v.errf(field, "at most %d names (it has %d)", maxHosts, len(hosts))
	}
	for _, h := range hosts {
		if _, err := netip.ParseAddr(h); err == nil {
			v.errf(field, "%q is an address: put it in networks", h)
			continue
		}
		if msg := domainErr(strings.TrimSuffix(strings.ToLower(h), ".")); msg != "" {
			v.errf(field, "%s", msg)
		} else if !strings.Contains(strings.Trim(h, "."), ".") {
			v.errf(field, "%q is not a full DNS name (like sip.provider.example)", h)
		}
	}
}
