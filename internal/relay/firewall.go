package relay

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
)

// The relay runs the appliance's own firewall owner, fed an appliance config made from
// relay.toml, so the relay gets the same rules, validation, blocklist and repairs as a box:
//
//	public interface   -> the uplink (blocklist, DNAT, masquerade of what leaves)
//	voice0             -> the LAN (the boxes' tunnel addresses are its hosts)
//	first office's box -> the PBX: SIP and RTP from its trunk networks only
//	further offices    -> [forward.*] entries with their own ports, from their trunks only
//	admin_networks     -> SSH; listen_port -> WireGuard, open to any address
//
// Nothing else is reachable from the public side: the input and forward chains drop it.

// vpnStandIn is the [vpn] interface of the made config. Its only effect is the input rule
// that opens listen_port on the uplink to any address, which the relay's WireGuard needs
// just as the box's phone VPN does; no interface of that name exists, so the [vpn] zone's
// other rules match nothing.
const vpnStandIn = "relaywg-none"

// vpnStandInNets are tried in turn for that [vpn]'s address: one that overlaps no office's tunnel.
var vpnStandInNets = []string{"10.255.255.253/30", "172.31.255.253/30", "192.168.255.253/30"}

// applianceConfig is the made config with, for each of its fields, the relay.toml field
// it came from (for messages).
type applianceConfig struct {
	toml   map[string]any
	fields map[string]string
}

// appliance makes and validates the appliance config of the relay's firewall. Problems go to
// f when it is given (while relay.toml is read), each against the relay.toml field they
// came from; otherwise they are the error.
func (c *Config) appliance(f *config.File) (*config.Config, error) {
	ac := c.render()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(ac.toml); err != nil {
		return nil, fmt.Errorf("relay: render the firewall's config: %w", err)
	}
	cfg, err := config.Parse(c.file+" (as the relay's firewall)", buf.Bytes())
	if err == nil {
		return cfg, nil
	}
	var es config.Errors
	if f == nil || !errors.As(err, &es) {
		return nil, fmt.Errorf("relay: the firewall made from %s: %w", c.file, err)
	}
	for _, e := range es {
		field, ok := ac.fields[e.Field]
		if !ok {
			field = ""
			for made, mine := range ac.fields {
				if strings.HasPrefix(e.Field, made+".") {
					field = mine
				}
			}
		}
		if field == "" {
			f.Errf("", "the firewall made from this file refuses %s: %s", e.Field, e.Msg)
			continue
		}
		f.Errf(field, "%s", e.Msg)
	}
	return nil, nil
}

// render builds the made config as a TOML tree.
func (c *Config) render() applianceConfig {
	ac := applianceConfig{toml: map[string]any{}, fields: map[string]string{}}
	names := c.Names()
	var lan []string
	for _, n := range names {
		o := c.Office[n]
		lan = append(lan, netip.PrefixFrom(o.Relay(), o.Tunnel.Bits()).String())
	}
	strs := func(ps []config.Prefix) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = p.String()
		}
		return out
	}
	ac.toml["site"] = "relay"
	ac.toml["lan"] = map[string]any{"interface": TunnelInterface, "addresses": lan}
	ac.fields["lan.addresses"] = "office"
	// dhcp: the owner writes no address or route of it (OwnerOptions.Links is off); the
	// relay host's own network setup keeps them.
	ac.toml["uplink"] = map[string]any{"primary": map[string]any{"name": "public", "interface": c.PublicInterface, "mode": "dhcp"}}
	ac.fields["uplink.primary.interface"] = "public_interface"
	ac.toml["admin"] = map[string]any{"networks": strs(c.AdminNetworks), "ssh_port": int(c.SSHPort), "web_ports": []int{}}
	ac.fields["admin.networks"], ac.fields["admin.ssh_port"] = "admin_networks", "ssh_port"
	ac.toml["web"] = map[string]any{"port": 0, "https_port": 0, "uplinks": false}
	ac.toml["sipguard"] = map[string]any{"enabled": true, "interfaces": []string{c.PublicInterface}}
	ac.fields["sipguard.interfaces"] = "public_interface"
	ac.toml["vpn"] = map[string]any{"enabled": true, "interface": vpnStandIn, "listen_port": int(c.ListenPort),
		"address": c.vpnStandInNet(), "endpoint": "relay.invalid"}
	ac.fields["vpn.listen_port"] = "listen_port"
	ac.toml["dns"] = map[string]any{"enabled": false}
	ac.toml["time"] = map[string]any{"serve_lan": false, "set_clock": false}
	ac.toml["ra"] = map[string]any{"enabled": false}
	peers, fwd := map[string]any{}, map[string]any{}
	var protect []string
	for i, n := range names {
		o := c.Office[n]
		k := func(field string) string { return "office." + n + "." + field }
		var transports []string
		for _, t := range o.SIPTransports {
			transports = append(transports, string(t))
		}
		if i == 0 {
			ac.toml["pbx"] = map[string]any{"address": o.Box().String(), "sip_port": int(o.SIPPort), "sip_transports": transports,
				"sip_tls_port": 0, "tunnel_port": 0, "rtp_ports": o.RTPPorts.String(), "rtp_from": "trusted", "web_ports": []int{}}
			peers[n] = map[string]any{"kind": "trunk", "networks": strs(o.TrunkNetworks)}
			ac.fields["pbx.sip_port"], ac.fields["pbx.sip_transports"], ac.fields["pbx.rtp_ports"] = k("sip_port"), k("sip_transports"), k("rtp_ports")
			ac.fields["sip_peers."+n] = k("trunk_networks")
			continue
		}
		// Further offices: SIP and RTP forwarded like the PBX's, from their own trunks,
		// which are also never blocked (blocklist.protect), as the first office's are.
		add := func(name, proto string, r config.PortRange, field string) {
			fwd[name] = map[string]any{"protocol": proto, "ports": r.String(), "to": o.Box().String(), "from": strs(o.TrunkNetworks)}
			ac.fields["forward."+name+".ports"] = k(field)
			ac.fields["forward."+name+".from"] = k("trunk_networks")
			ac.fields["forward."+name] = k(field)
		}
		for _, t := range transports {
			add(n+"_sip_"+t, t, o.SIPPort.Range(), "sip_port")
		}
		add(n+"_rtp", "udp", o.RTPPorts, "rtp_ports")
		protect = append(protect, strs(o.TrunkNetworks)...)
	}
	ac.toml["sip_peers"] = peers
	if len(fwd) > 0 {
		ac.toml["forward"] = fwd
	}
	if len(protect) > 0 {
		ac.toml["blocklist"] = map[string]any{"protect": protect}
		ac.fields["blocklist.protect"] = "office"
	}
	return ac
}

// vpnStandInNet is an address for the [vpn] stand-in that no office's tunnel overlaps.
func (c *Config) vpnStandInNet() string {
	for _, s := range vpnStandInNets {
		p := netip.MustParsePrefix(s)
		free := true
		for _, o := range c.Office {
			free = free && !o.Tunnel.Overlaps(p.Masked())
		}
		if free {
			return s
		}
	}
	return vpnStandInNets[0] // every one taken: the made config's check says so
}

// Firewall is the config the owner applies, made from relay.toml.
func (c *Config) Firewall() (*config.Config, error) { return c.appliance(nil) }

// newOwner makes the relay's firewall owner: the appliance's, without the parts a box has
// and a relay has not (the LAN's links, reply routing between two uplinks).
func newOwner(stateDir string, log *slog.Logger) (*netcfg.Owner, error) {
	dir := ""
	if stateDir != "" {
		dir = filepath.Join(stateDir, "firewall")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("relay: state directory: %w", err)
		}
	}
	return netcfg.NewOwner(netcfg.OwnerOptions{Firewall: netcfg.New(0), StateDir: dir, Log: log,
		ResolvConf: "/etc/resolv.conf", NoReplyMarks: true})
}
