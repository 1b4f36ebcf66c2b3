package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// VPN is [vpn]: the WireGuard door for remote phones and softphones (package vpn).
type VPN struct {
	Enabled bool `toml:"enabled"`
	// Interface is the WireGuard interface's name (default wg0).
	Interface string `toml:"interface"`
	// ListenPort is the UDP port on the uplinks the phones dial (default 51820).
	ListenPort Port `toml:"listen_port"`
	// Address is the box's tunnel address with the tunnel's prefix ("10.99.0.1/24"): every
	// peer's address is inside it.
	Address Prefix `toml:"address"`
	// Endpoint is the box's public name or address the phones dial, written in their
	// configs ("office.example.net"; a port after it overrides listen_port there).
	Endpoint string `toml:"endpoint"`
	// DNS servers written in the peers' configs (none by default).
	DNS []Addr `toml:"dns"`
	// Keepalive is the persistent keepalive written in the peers' configs, which keeps a
	// phone's NAT mapping open so the PBX can call it (default 25s; 0 off).
	Keepalive time.Duration `toml:"keepalive"`
	// Provisioning are the phones' provisioning servers on the LAN a peer's "provisioning"
	// reach opens ("tcp/192.168.1.10:5001"). Default: the [[dhcp.provision]] URLs and TFTP
	// servers that name a LAN address.
	Provisioning []Reach `toml:"provisioning"`
	// Peers are the phones, by name.
	Peers map[string]*VPNPeer `toml:"peers"`
}

// VPNPeer is one [vpn.peers.NAME]: a phone or softphone.
type VPNPeer struct {
	// PublicKey is the phone's WireGuard public key (base64). Empty: the box makes the
	// phone's key pair and keeps it, so that the config and QR code it shows are complete.
	PublicKey string `toml:"public_key"`
	// Address is the phone's tunnel address, inside vpn.address.
	Address Addr `toml:"address"`
	// Reach is what the phone may reach through the tunnel. Default: "sip", "rtp" and
	// "provisioning". Also "pbx_web" (the PBX's web_ports), "box" (the box's SSH and web
	// ports) and "tcp/ADDR:PORT[-PORT]" or "udp/..." for a LAN host.
	Reach []Reach `toml:"reach"`
}

// Reach is one thing a VPN peer may reach: a keyword or proto/address:ports.
type Reach struct {
	Keyword string // sip, rtp, provisioning, pbx_web, box; "" for a target
	Proto   Protocol
	Addr    netip.Addr
	Ports   PortRange
}

// Reach keywords.
const (
	ReachSIP          = "sip"
	ReachRTP          = "rtp"
	ReachProvisioning = "provisioning"
	ReachPBXWeb       = "pbx_web"
	ReachBox          = "box"
)

// DefaultReach is what a peer may reach when it says nothing.
var DefaultReach = []Reach{{Keyword: ReachSIP}, {Keyword: ReachRTP}, {Keyword: ReachProvisioning}}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Reach) UnmarshalText(b []byte) error {
	s := string(b)
	switch s {
	case ReachSIP, ReachRTP, ReachProvisioning, ReachPBXWeb, ReachBox:
		*r = Reach{Keyword: s}
		return nil
	}
	proto, hostport, ok := strings.Cut(s, "/")
	host, ports, ok2 := strings.Cut(hostport, ":")
	bad := fmt.Errorf("%q is not sip, rtp, provisioning, pbx_web, box or a LAN target like \"tcp/192.168.1.10:443\"", s)
	if !ok || !ok2 || (proto != "tcp" && proto != "udp") {
		return bad
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return bad
	}
	var pr PortRange
	if err := pr.UnmarshalText([]byte(ports)); err != nil {
		return bad
	}
	*r = Reach{Proto: Protocol(proto), Addr: a, Ports: pr}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r Reach) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r Reach) String() string {
	if r.Keyword != "" {
		return r.Keyword
	}
	return fmt.Sprintf("%s/%s:%s", r.Proto, r.Addr, r.Ports)
}

// peerName is what a VPN peer may be called: it names its config file and its key's file.
var peerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// PeerNames are the VPN peers' names in order.
func (s *VPN) PeerNames() []string { return SortedNames(s.Peers) }

// PeerPrefixes are the VPN peers' tunnel addresses (as /32s): SIP from them is trusted by
// sipguard like a SIP peer's (alerts, never blocks). None when the VPN is off.
func (s *VPN) PeerPrefixes() []Prefix {
	if !s.Enabled {
		return nil
	}
	var out []Prefix
	for _, n := range s.PeerNames() {
		a := s.Peers[n].Address.Addr
		out = append(out, Prefix{netip.PrefixFrom(a, a.BitLen())})
	}
	return out
}

// EndpointHostPort is what the peers' configs dial: vpn.endpoint, with listen_port unless
// it names a port of its own.
func (s *VPN) EndpointHostPort() string {
	if h, p, err := net.SplitHostPort(s.Endpoint); err == nil {
		return net.JoinHostPort(h, p)
	}
	return net.JoinHostPort(strings.Trim(s.Endpoint, "[]"), strconv.Itoa(int(s.ListenPort)))
}

func (s *VPN) setDefaults(md *toml.MetaData) {
	if s.Interface == "" {
		s.Interface = "wg0"
	}
	if !md.IsDefined("vpn", "listen_port") {
		s.ListenPort = 51820
	}
	if !md.IsDefined("vpn", "keepalive") {
		s.Keepalive = 25 * time.Second
	}
	for _, n := range SortedNames(s.Peers) {
		if !md.IsDefined("vpn", "peers", n, "reach") {
			s.Peers[n].Reach = append([]Reach(nil), DefaultReach...)
		}
	}
}

// provisioningDefault reads the provisioning servers on the LAN from [dhcp]: URLs whose host
// is a LAN address (http 80, https 443, ftp 21, tftp udp 69, or the URL's port) and TFTP servers.
func (c *Config) provisioningDefault() []Reach {
	var out []Reach
	add := func(r Reach) {
		for _, o := range out {
			if o == r {
				return
			}
		}
		out = append(out, r)
	}
	for _, p := range c.DHCP.Provision {
		if u, err := url.Parse(p.URL); err == nil {
			a, err := netip.ParseAddr(u.Hostname())
			port, proto := map[string]uint16{"http": 80, "https": 443, "ftp": 21, "tftp": 69}[u.Scheme], Protocol("tcp")
			if u.Scheme == "tftp" {
				proto = "udp"
			}
			if n, perr := strconv.ParseUint(u.Port(), 10, 16); perr == nil && n > 0 {
				port = uint16(n)
			}
			if err == nil && port != 0 && c.inLAN(a.Unmap()) {
				add(Reach{Proto: proto, Addr: a.Unmap(), Ports: PortRange{port, port}})
			}
		}
		for _, t := range p.TFTPServers {
			if c.inLAN(t.Addr) {
				add(Reach{Proto: "udp", Addr: t.Addr, Ports: PortRange{69, 69}})
			}
		}
	}
	return out
}

func (s *VPN) check(c *Config, v *validator) {
	// The default comes from [dhcp], which setDefaults cannot see.
	if !v.md.IsDefined("vpn", "provisioning") {
		s.Provisioning = c.provisioningDefault()
	}
	if !s.Enabled {
		for field, src := range map[string]Source{"pbx.tunnel_from": c.PBX.TunnelFrom, "pbx.rtp_from": c.PBX.RTPFrom, "pbx.web_from": c.PBX.WebFrom} {
			if src == FromVPN {
				v.errf(field, "\"vpn\" while [vpn] is off: nobody could reach it; switch [vpn] on or choose another source")
			}
		}
		return
	}
	k := func(parts ...string) string { return key(append([]string{"vpn"}, parts...)...) }
	if msg := ifaceNameErr(s.Interface); msg != "" {
		v.errf(k("interface"), "%s", msg)
	}
	for _, used := range append([]string{c.LAN.Interface}, uplinkIfaces(c)...) {
		if s.Interface == used {
			v.errf(k("interface"), "interface %q is already the LAN's or an uplink's", used)
		}
	}
	if s.ListenPort == 0 {
		v.errf(k("listen_port"), "the phones need a UDP port to dial (51820 is WireGuard's usual one)")
	}
	for _, m := range c.managementPorts() {
		if m.port == s.ListenPort {
			v.errf(k("listen_port"), "port %d is the box's own %s", s.ListenPort, m.what)
		}
	}
	for _, f := range c.forwardedPorts() {
		if s.ListenPort != 0 && f.r.Overlaps(s.ListenPort.Range()) {
			v.errf(k("listen_port"), "port %d is already forwarded to %s by %s", s.ListenPort, f.to, f.field)
		}
	}
	pfx := s.Address.Prefix
	switch {
	case !pfx.IsValid():
		v.errf(k("address"), "the box's tunnel address with the tunnel's prefix is required (like \"10.99.0.1/24\")")
	case !pfx.Addr().Is4() || !pfx.Addr().IsPrivate():
		v.errf(k("address"), "%s: use a private IPv4 network the office does not use (like 10.99.0.1/24)", pfx)
	case pfx.Bits() > 30 || pfx.Bits() < 16:
		v.errf(k("address"), "%s: the prefix must be /16 to /30", pfx)
	case pfx.Addr() == pfx.Masked().Addr():
		v.errf(k("address"), "%s is the network's own address: give the box's address in it (like 10.99.0.1/24)", pfx)
	default:
		for _, l := range c.LAN.Subnets() {
			if l.Overlaps(pfx.Masked()) {
				v.errf(k("address"), "%s overlaps the LAN's %s", pfx.Masked(), l)
			}
		}
	}
	if s.Endpoint == "" {
		v.errf(k("endpoint"), "the box's public name or address the phones dial is required (like \"office.example.net\")")
	} else if h := endpointHost(s.Endpoint); hostnameErr(h) != "" {
		if _, err := netip.ParseAddr(h); err != nil {
			v.errf(k("endpoint"), "%q is not a host name or address (with an optional :port)", s.Endpoint)
		}
	}
	if s.Keepalive < 0 || s.Keepalive > time.Hour || (s.Keepalive > 0 && s.Keepalive < time.Second) {
		v.errf(k("keepalive"), "must be 0 (off) or 1s to 1h, not %s", s.Keepalive)
	}
	for _, r := range s.Provisioning {
		if r.Keyword != "" || !c.inLAN(r.Addr) {
			v.errf(k("provisioning"), "%s is not a LAN target like \"tcp/192.168.1.10:5001\"", r)
		}
	}
	addrs := map[netip.Addr]string{}
	keys := map[string]string{}
	for _, n := range s.PeerNames() {
		p := s.Peers[n]
		if !peerName.MatchString(n) {
			v.errf(k("peers", n), "the name %q must be 1-32 of letters, digits, _, - and . (it names the phone's config file)", n)
		}
		if p.PublicKey != "" {
			if b, err := base64.StdEncoding.DecodeString(p.PublicKey); err != nil || len(b) != 32 {
				v.errf(k("peers", n, "public_key"), "not a WireGuard public key (44 characters of base64, from `wg pubkey` or the phone's app)")
			} else if other, dup := keys[p.PublicKey]; dup {
				v.errf(k("peers", n, "public_key"), "the same key as peer %q", other)
			}
			keys[p.PublicKey] = n
		}
		a := p.Address.Addr
		switch {
		case !a.IsValid():
			v.errf(k("peers", n, "address"), "the phone's tunnel address inside %s is required", pfx.Masked())
		case pfx.IsValid() && (!pfx.Contains(a) || a == pfx.Addr() || a == pfx.Masked().Addr() || a == lastAddr(pfx)):
			v.errf(k("peers", n, "address"), "%s is not a free host address in the tunnel's %s", a, pfx.Masked())
		case addrs[a] != "":
			v.errf(k("peers", n, "address"), "%s is already peer %q's address", a, addrs[a])
		}
		if a.IsValid() && addrs[a] == "" {
			addrs[a] = n
		}
		for _, r := range p.Reach {
			if r.Keyword == "" && !c.inLAN(r.Addr) {
				v.errf(k("peers", n, "reach"), "%s is not on the LAN: a phone may only reach the office through the tunnel", r)
			}
			if r.Keyword == ReachBox {
				c.Warnings = append(c.Warnings, fmt.Sprintf("VPN peer %q may reach the box's SSH and web ports (vpn.peers.%s.reach has \"box\")", n, n))
			}
		}
	}
}

func uplinkIfaces(c *Config) []string {
	var out []string
	for _, u := range c.Uplink.All() {
		out = append(out, u.Interface)
	}
	return out
}

func endpointHost(e string) string {
	if h, _, err := net.SplitHostPort(e); err == nil {
		return h
	}
	return strings.Trim(e, "[]")
}

// lastAddr is an IPv4 prefix's broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
