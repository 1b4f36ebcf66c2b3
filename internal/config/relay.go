package config

import (
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Relay is [relay]: the office's voice path through a relay host with a stable public
// address (package relay/box; `appliance relay` runs the other end). On when Endpoint is set.
type Relay struct {
	// Endpoint is the relay's WireGuard endpoint, "host:port" (a name or an address; the
	// port defaults to DefaultRelayPort).
	Endpoint string `toml:"endpoint"`
	// PublicKey is the relay's WireGuard public key (base64, from `appliance relay status` on
	// the relay or its relay.key).
	PublicKey string `toml:"public_key"`
	// PublicAddress is the office's voice address at the relay, the one the trunk provider
	// must allow and the PBX advertises (default: the endpoint's host).
	PublicAddress string `toml:"public_address"`
	// Tunnel is the tunnel's network, the relay's address first, the box's second (default
	// 10.254.0.0/30).
	Tunnel Prefix `toml:"tunnel"`
	// Interface is the box's tunnel interface (default relay0).
	Interface string `toml:"interface"`
	// Duplicate sends every tunnel packet over both uplinks: a silent line loses no audio,
	// at the cost of the modem's data.
	Duplicate bool `toml:"duplicate"`
	// AllTraffic sends all the office's traffic through the relay, not only its voice.
	AllTraffic bool `toml:"all_traffic"`
	// ProbeInterval is how often each line probes the relay (default 1s).
	ProbeInterval time.Duration `toml:"probe_interval"`
}

// DefaultRelayPort is the relay's WireGuard port when the endpoint names none.
const DefaultRelayPort = 51830

// DefaultRelayTunnel is the tunnel's network when [relay] names none.
var DefaultRelayTunnel = netip.MustParsePrefix("10.254.0.0/30")

// Enabled says whether the relay is in use (an endpoint is set).
func (r *Relay) Enabled() bool { return r.Endpoint != "" }

// EndpointHostPort splits the endpoint into its host and port (DefaultRelayPort when none).
func (r *Relay) EndpointHostPort() (host string, port uint16) {
	h, p, err := net.SplitHostPort(r.Endpoint)
	if err != nil {
		return endpointHost(r.Endpoint), DefaultRelayPort
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return h, 0
	}
	return h, uint16(n)
}

// RelayAddr is the relay's tunnel address (the tunnel's first host).
func (r *Relay) RelayAddr() netip.Addr { return r.Tunnel.Masked().Addr().Next() }

// BoxAddr is the box's tunnel address (the tunnel's second host).
func (r *Relay) BoxAddr() netip.Addr { return r.RelayAddr().Next() }

func (r *Relay) setDefaults(md *toml.MetaData) {
	if !r.Enabled() {
		return
	}
	if r.Interface == "" {
		r.Interface = "relay0"
	}
	if !r.Tunnel.IsValid() {
		r.Tunnel = Prefix{DefaultRelayTunnel}
	}
	if !md.IsDefined("relay", "probe_interval") {
		r.ProbeInterval = time.Second
	}
	if r.PublicAddress == "" {
		r.PublicAddress, _ = r.EndpointHostPort()
	}
}

func (r *Relay) check(c *Config, v *validator) {
	if !r.Enabled() {
		for _, f := range []string{"public_key", "public_address", "tunnel", "interface", "duplicate", "all_traffic", "probe_interval"} {
			if v.md.IsDefined("relay", f) {
				v.errf(key("relay", f), "set while [relay] has no endpoint: the relay is off without one; give endpoint = \"relay.example.net:%d\" or remove it", DefaultRelayPort)
				return
			}
		}
		return
	}
	k := func(f string) string { return key("relay", f) }
	host, port := r.EndpointHostPort()
	if _, err := netip.ParseAddr(host); err != nil && hostnameErr(host) != "" || host == "" || port == 0 {
		v.errf(k("endpoint"), "%q is not a host name or address with an optional port (like \"relay.example.net:%d\")", r.Endpoint, DefaultRelayPort)
	} else if a, err := netip.ParseAddr(host); err == nil && !publicAddr(a) {
		v.errf(k("endpoint"), "%s is not a public address: the relay must be reachable from both uplinks", a)
	}
	if b, err := wgtypes.ParseKey(r.PublicKey); err != nil || b == (wgtypes.Key{}) {
		v.errf(k("public_key"), "the relay's WireGuard public key is required (44 characters of base64, from `appliance relay status` on the relay)")
	}
	if !v.md.IsDefined("relay", "public_address") {
		// The endpoint's host, checked above.
	} else if a, err := netip.ParseAddr(r.PublicAddress); err != nil {
		if msg := hostnameErr(r.PublicAddress); msg != "" {
			v.errf(k("public_address"), "%s (the office's voice address at the relay: a name or an address)", msg)
		}
	} else if !publicAddr(a) {
		v.errf(k("public_address"), "%s is not a public address: the trunk provider must reach it", a)
	}
	pfx := r.Tunnel.Prefix
	switch {
	case !pfx.Addr().Is4() || !pfx.Addr().IsPrivate():
		v.errf(k("tunnel"), "%s: use a private IPv4 network the office does not use (like %s)", pfx, DefaultRelayTunnel)
	case pfx.Bits() > 30 || pfx.Bits() < 16:
		v.errf(k("tunnel"), "%s: the prefix must be /16 to /30", pfx)
	case pfx != pfx.Masked():
		v.errf(k("tunnel"), "%s: give the network's own address (%s); the relay takes its first host, the box the second", pfx, pfx.Masked())
	default:
		for _, l := range c.LAN.Subnets() {
			if l.Overlaps(pfx) {
				v.errf(k("tunnel"), "%s overlaps the LAN's %s", pfx, l)
			}
		}
		if c.VPN.Enabled && c.VPN.Address.IsValid() && c.VPN.Address.Masked().Overlaps(pfx) {
			v.errf(k("tunnel"), "%s overlaps the VPN's %s", pfx, c.VPN.Address.Masked())
		}
	}
	if msg := ifaceNameErr(r.Interface); msg != "" {
		v.errf(k("interface"), "%s", msg)
	}
	used := append([]string{c.LAN.Interface}, uplinkIfaces(c)...)
	if c.VPN.Enabled {
		used = append(used, c.VPN.Interface)
	}
	for _, u := range used {
		if r.Interface == u {
			v.errf(k("interface"), "interface %q is already the LAN's, an uplink's or the VPN's", u)
		}
	}
	if r.ProbeInterval < 100*time.Millisecond || r.ProbeInterval > 10*time.Second {
		v.errf(k("probe_interval"), "must be 100ms to 10s, not %s (the relay is declared unreachable after 3 unanswered probes)", r.ProbeInterval)
	}
	if r.Duplicate && c.Uplink.Backup == nil {
		c.Warnings = append(c.Warnings, "relay.duplicate is on but there is only one uplink: nothing is duplicated")
	}
}

// publicAddr says whether a could be a host on the internet.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback()
}
