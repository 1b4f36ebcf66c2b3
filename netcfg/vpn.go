package netcfg

import (
	"net/netip"
	"slices"

	"github.com/officeedge/appliance/internal/config"
)

// The VPN zone ([vpn], package vpn runs the WireGuard interface): the phones dial the
// WireGuard port on the uplinks; what comes out of the tunnel may go only where its peer may
// reach (WireGuard's cryptokey routing makes a tunnel packet's source address the peer's
// own, so the source address names the peer). Nothing else: not the office PCs, not the
// box's SSH or management, not the internet.

// SetVPN is the set holding the WireGuard interface's name.
const SetVPN = "vpn"

// Saddr matches one source address.
func Saddr(a netip.Addr) Match { return addrMatch{v6: a.Is6(), addr: a} }

// vpnTarget is one destination a VPN peer may reach.
type vpnTarget struct {
	what  string
	proto string
	to    netip.Addr // invalid: the box itself
	ports config.PortRange
}

// vpnRules adds the VPN zone to t's input and forward chains, before their closing rules
// (the drop of everything else). Nothing when the VPN is off.
func vpnRules(c *config.Config, t *Table) {
	v := c.VPN
	if !v.Enabled {
		return
	}
	t.Sets = append(t.Sets, &Set{Name: SetVPN, Type: TypeIfname, Elems: []string{v.Interface}, Comment: "the VPN for remote phones"})
	var in, fwd []Rule
	in = append(in, Rule{Match: []Match{IifIn("uplinks"), DPort("udp", uint16(v.ListenPort), uint16(v.ListenPort))}, Verdict: Accept, Comment: "WireGuard from the remote phones"})
	box := netip.Addr{}
	// The DNS servers the phones' configs name, where the tunnel leads to them: the box's
	// own resolver (on a LAN or tunnel address) or one on the LAN.
	for _, d := range v.DNS {
		for _, proto := range []string{"udp", "tcp"} {
			m := []Match{IifIn(SetVPN), Daddr(d.Addr), DPort(proto, 53, 53)}
			switch {
			case d.Addr == v.Address.Addr() || boxLANAddr(c, d.Addr):
				in = append(in, Rule{Match: m, Verdict: Accept, Comment: "vpn: DNS"})
			case lanSubnet(c, d.Addr):
				fwd = append(fwd, Rule{Match: m, Verdict: Accept, Comment: "vpn: DNS"})
			}
		}
	}
	for _, n := range v.PeerNames() {
		p := v.Peers[n]
		for _, tg := range peerTargets(c, p) {
			m := []Match{IifIn(SetVPN), Saddr(p.Address.Addr)}
			if tg.to == box {
				in = append(in, Rule{Match: append(m, DPort(tg.proto, tg.ports.Lo, tg.ports.Hi)), Verdict: Accept, Comment: "vpn " + n + ": " + tg.what})
				continue
			}
			fwd = append(fwd, Rule{Match: append(m, Daddr(tg.to), DPort(tg.proto, tg.ports.Lo, tg.ports.Hi)), Verdict: Accept, Comment: "vpn " + n + ": " + tg.what})
		}
	}
	// PBX services opened to the VPN as a whole (pbx.*_from = "vpn").
	for _, s := range vpnServices(c) {
		fwd = append(fwd, Rule{Match: []Match{IifIn(SetVPN), Daddr(s.to), DPort(s.proto, s.ports.Lo, s.ports.Hi)}, Verdict: Accept, Comment: "vpn: " + s.what})
	}
	// The PBX calls the phones (INVITEs to their registered contact, RTP to them).
	fwd = append(fwd, Rule{Match: []Match{IifIn("lan"), Saddr(c.PBX.Address.Addr), OifIn(SetVPN)}, Verdict: Accept, Comment: "the PBX to the VPN phones"})
	for _, ch := range t.Chains {
		switch ch.Name {
		case "input":
			ch.Rules = insertBeforeTail(ch.Rules, in)
		case "forward":
			ch.Rules = insertBeforeTail(ch.Rules, fwd)
		}
	}
}

func boxLANAddr(c *config.Config, a netip.Addr) bool {
	for _, p := range c.LAN.Addresses {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

func lanSubnet(c *config.Config, a netip.Addr) bool {
	for _, p := range c.LAN.Subnets() {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// insertBeforeTail puts more before a chain's closing rules (netcfg/dropped.go: the notes of
// what is dropped, then the drop), so that what the VPN lets in is not counted as dropped.
func insertBeforeTail(rules, more []Rule) []Rule {
	return slices.Insert(rules, len(rules)-len(droppedRules()), more...)
}

// peerTargets expands a peer's reach into destinations; an invalid address is the box.
func peerTargets(c *config.Config, p *config.VPNPeer) []vpnTarget {
	pbx := c.PBX.Address.Addr
	var out []vpnTarget
	add := func(what, proto string, to netip.Addr, r config.PortRange) {
		t := vpnTarget{what, proto, to, r}
		if !r.IsZero() && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	for _, r := range p.Reach {
		switch r.Keyword {
		case config.ReachSIP:
			for _, tr := range c.PBX.SIPTransports {
				add("SIP", string(tr), pbx, c.PBX.SIPPort.Range())
			}
			add("SIP TLS", "tcp", pbx, c.PBX.SIPTLSPort.Range())
		case config.ReachRTP:
			add("RTP", "udp", pbx, c.PBX.RTPPorts)
		case config.ReachPBXWeb:
			for _, w := range c.PBX.WebPorts {
				add("PBX web", "tcp", pbx, w.Range())
			}
		case config.ReachProvisioning:
			for _, t := range c.VPN.Provisioning {
				add("provisioning", string(t.Proto), t.Addr, t.Ports)
			}
		case config.ReachBox:
			add("the box's SSH", "tcp", netip.Addr{}, c.Admin.SSHPort.Range())
			for _, w := range append(append([]config.Port(nil), c.Admin.WebPorts...), c.WebPort(), c.Web.HTTPSPort) {
				add("the box's web", "tcp", netip.Addr{}, w.Range())
			}
		default:
			add(r.String(), string(r.Proto), r.Addr, r.Ports)
		}
	}
	return out
}

// vpnServices are the PBX services whose *_from is "vpn".
func vpnServices(c *config.Config) []vpnTarget {
	p := c.PBX
	var out []vpnTarget
	add := func(what, proto string, r config.PortRange, src config.Source) {
		if src == config.FromVPN && !r.IsZero() {
			out = append(out, vpnTarget{what, proto, p.Address.Addr, r})
		}
	}
	for _, proto := range []string{"tcp", "udp"} {
		add("PBX tunnel", proto, p.TunnelPort.Range(), p.TunnelFrom)
	}
	add("RTP", "udp", p.RTPPorts, p.RTPFrom)
	for _, w := range p.WebPorts {
		add("PBX web", "tcp", w.Range(), p.WebFrom)
	}
	return out
}
