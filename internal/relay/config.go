package relay

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/config"
)

// Defaults of relay.toml.
const (
	DefaultListenPort = 51830
	DefaultSIPPort    = 5060
	DefaultRTPPorts   = "10000-20000"
	// TunnelInterface is the relay's TUN device; every office's tunnel address is on it.
	TunnelInterface = "voice0"
)

// Config is relay.toml: the relay host's public side and the offices it serves.
type Config struct {
	// PublicInterface faces the internet: the trunks, the offices' boxes and the attackers.
	PublicInterface string `toml:"public_interface"`
	// PublicAddress is the offices' voice address (the PBXs advertise it); default: the
	// interface's first IPv4 address, read at start.
	PublicAddress config.Addr `toml:"public_address"`
	// ListenPort is WireGuard's UDP port, open to any address (the boxes' lines change).
	ListenPort config.Port `toml:"listen_port"`
	// AdminNetworks may reach SSH; nobody else on the public side may.
	AdminNetworks []config.Prefix `toml:"admin_networks"`
	SSHPort       config.Port     `toml:"ssh_port"`
	// Office are the offices by name: one WireGuard peer and one public port range each.
	Office map[string]*Office `toml:"office"`

	file string // where it was read, for messages
}

// Office is one [office.NAME].
type Office struct {
	// PublicKey is the box's WireGuard key (`appliance relay status` on the box prints it).
	PublicKey string `toml:"public_key"`
	// Tunnel is the office's /30: the relay is its first host, the box its second.
	Tunnel        config.Prefix     `toml:"tunnel"`
	SIPPort       config.Port       `toml:"sip_port"`
	SIPTransports []config.Protocol `toml:"sip_transports"`
	RTPPorts      config.PortRange  `toml:"rtp_ports"`
	// TrunkNetworks alone may send SIP and RTP to this office's ports.
	TrunkNetworks []config.Prefix `toml:"trunk_networks"`

	Key wgtypes.Key `toml:"-"` // PublicKey, parsed
}

// Relay is the relay's own tunnel address (the tunnel's first host).
func (o *Office) Relay() netip.Addr { return o.Tunnel.Masked().Addr().Next() }

// Box is the office's box's tunnel address (the tunnel's second host).
func (o *Office) Box() netip.Addr { return o.Relay().Next() }

// Names are the offices' names in order; the first is the one the firewall calls the PBX.
func (c *Config) Names() []string { return config.SortedNames(c.Office) }

// officeName names the office's peer, its nft forward sets and its blocklist claims.
var officeName = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,23}$`)

// LoadConfig reads and checks relay.toml.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, config.MaxFileSize+1)) // ParseConfig refuses more
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and checks data; name is the file name in messages. Every problem is
// reported with its file, line, column and field, like the appliance's own config; what the
// firewall built from it refuses is reported against the relay.toml field it came from.
func ParseConfig(name string, data []byte) (*Config, error) {
	c := &Config{file: name}
	f, err := config.DecodeFile(name, data, c)
	if err != nil {
		return nil, err
	}
	c.setDefaults(f)
	c.check(f)
	if err := f.Err(); err != nil {
		return nil, err
	}
	if _, err := c.appliance(f); err != nil {
		return nil, err
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) setDefaults(f *config.File) {
	if !f.IsDefined("listen_port") {
		c.ListenPort = DefaultListenPort
	}
	if !f.IsDefined("ssh_port") {
		c.SSHPort = 22
	}
	for _, n := range c.Names() {
		o := c.Office[n]
		if !f.IsDefined("office", n, "sip_port") {
			o.SIPPort = DefaultSIPPort
		}
		if !f.IsDefined("office", n, "sip_transports") {
			o.SIPTransports = []config.Protocol{"udp", "tcp"}
		}
		if !f.IsDefined("office", n, "rtp_ports") {
			_ = o.RTPPorts.UnmarshalText([]byte(DefaultRTPPorts))
		}
	}
}

// check is what the appliance's config cannot check for it: the offices and their tunnels.
func (c *Config) check(f *config.File) {
	if c.PublicInterface == "" {
		f.Errf("public_interface", "the interface facing the internet is required (like \"eth0\")")
	}
	if a := c.PublicAddress.Addr; a.IsValid() && (!a.Is4() || !a.IsGlobalUnicast()) {
		f.Errf("public_address", "%s: give the relay's public IPv4 address (the PBXs advertise it to the trunks)", a)
	}
	if c.ListenPort == 0 {
		f.Errf("listen_port", "the boxes need a UDP port to reach the relay (51830 is the default)")
	}
	if len(c.Office) == 0 {
		f.Errf("office", "no [office.NAME]: the relay serves at least one office")
	}
	keys := map[wgtypes.Key]string{}
	var tunnels []string
	for _, n := range c.Names() {
		o := c.Office[n]
		k := func(field string) string { return "office." + n + "." + field }
		if !officeName.MatchString(n) {
			f.Errf("office."+n, "the name %q must be 1-24 of lower-case letters, digits and _ (it names firewall sets and blocklist claims)", n)
		}
		key, err := wgtypes.ParseKey(o.PublicKey)
		switch {
		case o.PublicKey == "":
			f.Errf(k("public_key"), "the box's WireGuard public key is required (`appliance relay status` on the box prints it)")
		case err != nil:
			f.Errf(k("public_key"), "not a WireGuard public key (44 characters of base64)")
		case keys[key] != "":
			f.Errf(k("public_key"), "the same key as office %q", keys[key])
		default:
			o.Key, keys[key] = key, n
		}
		t := o.Tunnel.Prefix
		switch {
		case !t.IsValid():
			f.Errf(k("tunnel"), "the office's tunnel network is required (like \"10.254.0.0/30\": the relay is .1, the box .2)")
		case !t.Addr().Is4() || !t.Addr().IsPrivate():
			f.Errf(k("tunnel"), "%s: use a private IPv4 network (like 10.254.0.0/30)", t)
		case t.Bits() != 30:
			f.Errf(k("tunnel"), "%s: the tunnel is a /30 (the relay and the box)", t)
		case t.Addr() != t.Masked().Addr():
			f.Errf(k("tunnel"), "%s has host bits set: write the network, %s", t, t.Masked())
		default:
			for _, m := range tunnels {
				if c.Office[m].Tunnel.Overlaps(t) {
					f.Errf(k("tunnel"), "%s overlaps office %q's tunnel %s", t, m, c.Office[m].Tunnel)
				}
			}
			tunnels = append(tunnels, n)
		}
		if o.SIPPort == 0 {
			f.Errf(k("sip_port"), "the office's public SIP port is required (5060 for the first office)")
		}
		if len(o.SIPTransports) == 0 {
			f.Errf(k("sip_transports"), "give udp, tcp or both")
		}
		if o.RTPPorts.IsZero() {
			f.Errf(k("rtp_ports"), "the office's public media ports are required (like \"10000-20000\")")
		}
		if len(o.TrunkNetworks) == 0 {
			f.Errf(k("trunk_networks"), "the trunk provider's networks are required: nobody else may send SIP or RTP to the office")
		}
		c.checkPorts(f, n)
	}
}

// checkPorts refuses an office port that another office, SSH or WireGuard already takes:
// the public address is shared, the ports tell the offices apart.
func (c *Config) checkPorts(f *config.File, n string) {
	o := c.Office[n]
	mine := []struct {
		field string
		r     config.PortRange
	}{{"sip_port", o.SIPPort.Range()}, {"rtp_ports", o.RTPPorts}}
	for _, p := range mine {
		if p.r.IsZero() {
			continue
		}
		field := "office." + n + "." + p.field
		if p.r.Overlaps(c.ListenPort.Range()) {
			f.Errf(field, "%s takes WireGuard's listen_port %d", p.r, c.ListenPort)
		}
		if c.SSHPort != 0 && p.r.Overlaps(c.SSHPort.Range()) {
			f.Errf(field, "%s takes the relay's ssh_port %d", p.r, c.SSHPort)
		}
		if p.r.Overlaps(config.PortRange{Lo: SharePort, Hi: SharePort}) {
			f.Errf(field, "%s takes port %d, the block sharing on the tunnel", p.r, SharePort)
		}
		for _, m := range c.Names() {
			if m >= n {
				break
			}
			other := c.Office[m]
			for _, q := range []config.PortRange{other.SIPPort.Range(), other.RTPPorts} {
				if !q.IsZero() && p.r.Overlaps(q) {
					f.Errf(field, "%s overlaps office %q's ports %s: each office needs its own public ports", p.r, m, q)
				}
			}
		}
	}
	if o.RTPPorts.Overlaps(o.SIPPort.Range()) {
		f.Errf("office."+n+".rtp_ports", "%s takes the office's own sip_port %d", o.RTPPorts, o.SIPPort)
	}
}
