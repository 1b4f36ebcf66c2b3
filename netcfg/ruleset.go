package netcfg

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
)

// TableName is the appliance's own table; every other table in the kernel is left alone.
const TableName = "appliance"

// Names of the blocklist sets, filled by `appliance block` and sipguard.
const (
	SetBlock4    = "block4"    // single IPv4 addresses, each with its own timeout
	SetBlock6    = "block6"    // single IPv6 addresses
	SetBlockNet4 = "blocknet4" // IPv4 networks (interval set)
	SetBlockNet6 = "blocknet6" // IPv6 networks
)

// BlockSets are the sets whose elements outlive a re-apply of the ruleset.
var BlockSets = []string{SetBlock4, SetBlock6, SetBlockNet4, SetBlockNet6}

type nfproto string

// NFProto matches the packet's IP family ("ipv4" or "ipv6").
func NFProto(f string) Match { return nfproto(f) }

func (m nfproto) text() string { return "meta nfproto " + string(m) }
func (m nfproto) exprs(map[string]*nftables.Set) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if m == "ipv6" {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

// service is one port (range) of one protocol forwarded from the uplinks to a LAN host.
type service struct {
	name   string
	proto  string
	ports  config.PortRange
	to     netip.Addr
	to6    netip.Addr // the host's IPv6 address, reached by routing, if any
	toPort uint16     // 0: same port
	from   string     // source set name without family suffix, "" for anywhere
}

// Build turns a validated configuration into the appliance's table.
func Build(c *config.Config) *Table {
	t := &Table{Name: TableName}
	var uplinks []string
	for _, u := range c.Uplink.All() {
		uplinks = append(uplinks, u.Interface)
	}
	v4, v6 := split(c.SIPNetworks())
	a4, a6 := split(c.Admin.Networks)
	// The block sets come first: they outlive every re-apply (the other sets are made anew
	// after them), so the kernel lists the sets in this order every time.
	t.Sets = []*Set{
		{Name: SetBlock4, Type: TypeIPv4, Timeout: true, Counter: true, Comment: "blocked addresses"},
		{Name: SetBlock6, Type: TypeIPv6, Timeout: true, Counter: true, Comment: "blocked addresses"},
		{Name: SetBlockNet4, Type: TypeIPv4, Interval: true, Timeout: true, Counter: true, Comment: "blocked networks"},
		{Name: SetBlockNet6, Type: TypeIPv6, Interval: true, Timeout: true, Counter: true, Comment: "blocked networks"},
		{Name: "uplinks", Type: TypeIfname, Elems: uplinks, Comment: "interfaces to the internet"},
		{Name: "lan", Type: TypeIfname, Elems: []string{c.LAN.Interface}, Comment: "the office LAN"},
		{Name: "sip_peers4", Type: TypeIPv4, Interval: true, Elems: v4, Comment: "trusted SIP trunk providers and remote offices"},
		{Name: "sip_peers6", Type: TypeIPv6, Interval: true, Elems: v6, Comment: "trusted SIP trunk providers and remote offices"},
		{Name: "admin4", Type: TypeIPv4, Interval: true, Elems: a4, Comment: "admin networks"},
		{Name: "admin6", Type: TypeIPv6, Interval: true, Elems: a6, Comment: "admin networks"},
	}
	svcs := services(c)
	for _, name := range config.SortedNames(c.Forward) {
		f4, f6 := split(c.Forward[name].From)
		t.Sets = append(t.Sets,
			&Set{Name: "fwd_" + name + "4", Type: TypeIPv4, Interval: true, Elems: f4, Comment: "who may use forward " + name},
			&Set{Name: "fwd_" + name + "6", Type: TypeIPv6, Interval: true, Elems: f6, Comment: "who may use forward " + name})
	}

	t.Chains = []*Chain{
		blocklistChain(),
		dnatChain(svcs),
		inputChain(c),
		forwardChain(svcs),
		{Name: "outbound_nat", Type: "nat", Hook: "postrouting", Priority: 100, Policy: "accept", Rules: []Rule{
			{Match: []Match{NFProto("ipv4"), OifIn("uplinks")}, Verdict: Masquerade, Comment: "office to the internet"},
		}},
	}
	addDroppedSets(t)
	sipguardRules(c, t)   // netcfg/sipguard.go
	replyRouteRules(c, t) // netcfg/replyroute.go
	vpnRules(c, t)        // netcfg/vpn.go
	relayRules(c, t)      // netcfg/relay.go
	voiceRules(c, t)      // netcfg/voice.go
	return t
}

// blocklistChain drops blocked sources in the earliest hook that does not need the
// interface to exist when the ruleset loads (the ingress hook binds to devices, and the LTE
// modem is a USB device that may come later). Raw priority runs before conntrack, so a
// blocked source creates no state and an established flow from it stops at once.
func blocklistChain() *Chain {
	return &Chain{Name: "blocklist", Type: "filter", Hook: "prerouting", Priority: -300, Policy: "accept", Rules: []Rule{
		{Match: []Match{IifNotIn("uplinks")}, Verdict: Accept, Comment: "not from the internet"},
		{Match: []Match{SaddrIn(false, "sip_peers4")}, Verdict: Accept, Comment: "trusted SIP peers are never blocked"},
		{Match: []Match{SaddrIn(true, "sip_peers6")}, Verdict: Accept, Comment: "trusted SIP peers are never blocked"},
		{Match: []Match{SaddrIn(false, "admin4")}, Verdict: Accept, Comment: "admin networks are never blocked"},
		{Match: []Match{SaddrIn(true, "admin6")}, Verdict: Accept, Comment: "admin networks are never blocked"},
		{Match: []Match{SaddrIn(false, SetBlock4)}, Verdict: Drop, Comment: "blocked address"},
		{Match: []Match{SaddrIn(true, SetBlock6)}, Verdict: Drop, Comment: "blocked address"},
		{Match: []Match{SaddrIn(false, SetBlockNet4)}, Verdict: Drop, Comment: "blocked network"},
		{Match: []Match{SaddrIn(true, SetBlockNet6)}, Verdict: Drop, Comment: "blocked network"},
	}}
}

func services(c *config.Config) []service {
	p := c.PBX
	pbx, pbx6 := p.Address.Addr, p.Address6.Addr
	from := func(s config.Source) string {
		switch s {
		case config.FromTrusted:
			return "sip_peers"
		case config.FromAdmin:
			return "admin"
		}
		return ""
	}
	sipFrom := "sip_peers"
	if p.AllowSIPFromAnywhere {
		sipFrom = ""
	}
	var out []service
	add := func(name, proto string, r config.PortRange, src config.Source, sources string) {
		if r.IsZero() || src == config.FromNobody || src == config.FromVPN { // vpn: netcfg/vpn.go
			return
		}
		out = append(out, service{name: name, proto: proto, ports: r, to: pbx, to6: pbx6, from: sources})
	}
	for _, tr := range p.SIPTransports {
		add("SIP", string(tr), p.SIPPort.Range(), config.FromTrusted, sipFrom)
	}
	add("SIP TLS", "tcp", p.SIPTLSPort.Range(), config.FromTrusted, sipFrom)
	for _, proto := range []string{"tcp", "udp"} {
		add("PBX tunnel", proto, p.TunnelPort.Range(), p.TunnelFrom, from(p.TunnelFrom))
	}
	add("RTP", "udp", p.RTPPorts, p.RTPFrom, from(p.RTPFrom))
	for _, w := range p.WebPorts {
		add("PBX web", "tcp", w.Range(), p.WebFrom, from(p.WebFrom))
	}
	for _, name := range config.SortedNames(c.Forward) {
		f := c.Forward[name]
		s := service{name: "forward " + name, proto: string(f.Protocol), ports: f.Ports, to: f.To.Addr, from: "fwd_" + name}
		if uint16(f.ToPort) != f.Ports.Lo {
			s.toPort = uint16(f.ToPort)
		}
		out = append(out, s)
	}
	return out
}

func dnatChain(svcs []service) *Chain {
	ch := &Chain{Name: "port_forward", Type: "nat", Hook: "prerouting", Priority: -100, Policy: "accept"}
	for _, s := range svcs {
		port := s.toPort
		if port == 0 && s.ports.Lo == s.ports.Hi {
			port = s.ports.Lo
		}
		ch.Rules = append(ch.Rules, Rule{
			Match:   []Match{IifIn("uplinks"), NFProto("ipv4"), DPort(s.proto, s.ports.Lo, s.ports.Hi)},
			Verdict: DNAT(s.to, port), Comment: s.name,
		})
	}
	return ch
}

func forwardChain(svcs []service) *Chain {
	ch := &Chain{Name: "forward", Type: "filter", Hook: "forward", Priority: 0, Policy: "drop", Rules: []Rule{
		{Match: []Match{CtState("established", "related")}, Verdict: Accept, Comment: "replies"},
		{Match: []Match{CtState("invalid")}, Verdict: Drop, Comment: "invalid"},
		{Match: []Match{IifIn("lan"), OifIn("uplinks")}, Verdict: Accept, Comment: "office to the internet"},
	}}
	for _, s := range svcs {
		dport := s.ports
		if s.toPort != 0 {
			dport = config.PortRange{Lo: s.toPort, Hi: s.toPort}
		}
		m := []Match{IifIn("uplinks"), Daddr(s.to), DPort(s.proto, dport.Lo, dport.Hi)}
		if s.from != "" {
			m = append(m, SaddrIn(false, s.from+"4"))
		}
		// Only connections the box itself forwarded: nobody on the ISP's segment may route
		// straight to the LAN's private addresses.
		m = append(m, CtStatusDNAT())
		ch.Rules = append(ch.Rules, Rule{Match: m, Verdict: Accept, Comment: s.name})
		if s.to6.IsValid() && s.toPort == 0 {
			m6 := []Match{IifIn("uplinks"), Daddr(s.to6), DPort(s.proto, dport.Lo, dport.Hi)}
			if s.from != "" {
				m6 = append(m6, SaddrIn(true, s.from+"6"))
			}
			ch.Rules = append(ch.Rules, Rule{Match: m6, Verdict: Accept, Comment: s.name + " (IPv6)"})
		}
	}
	ch.Rules = append(ch.Rules, droppedRules()...) // netcfg/dropped.go
	return ch
}

func inputChain(c *config.Config) *Chain {
	ch := &Chain{Name: "input", Type: "filter", Hook: "input", Priority: 0, Policy: "drop", Rules: []Rule{
		{Match: []Match{CtState("established", "related")}, Verdict: Accept, Comment: "replies"},
		// Neighbour discovery is untracked by conntrack; the link dies without it.
		{Match: []Match{ICMPType("icmpv6", "nd-neighbor-solicit")}, Verdict: Accept, Comment: "IPv6 neighbour discovery"},
		{Match: []Match{ICMPType("icmpv6", "nd-neighbor-advert")}, Verdict: Accept, Comment: "IPv6 neighbour discovery"},
		{Match: []Match{ICMPType("icmpv6", "nd-router-advert")}, Verdict: Accept, Comment: "IPv6 router advertisements"},
		{Match: []Match{CtState("invalid")}, Verdict: Drop, Comment: "invalid"},
		{Match: []Match{Iif("lo")}, Verdict: Accept, Comment: "the box itself"},
		{Match: []Match{IifIn("lan")}, Verdict: Accept, Comment: "the office LAN may reach the box"},
		{Match: []Match{ICMPType("icmp", "echo-request"), Limit(10, 20)}, Verdict: Accept, Comment: "ping, rate-limited"},
		{Match: []Match{ICMPType("icmpv6", "echo-request"), Limit(10, 20)}, Verdict: Accept, Comment: "ping, rate-limited"},
		{Match: []Match{IifIn("uplinks"), NFProto("ipv4"), Ports("udp", 67, 68)}, Verdict: Accept, Comment: "DHCP replies"},
		{Match: []Match{IifIn("uplinks"), NFProto("ipv6"), Ports("udp", 547, 546)}, Verdict: Accept, Comment: "DHCPv6 replies"},
	}}
	var mgmt []uint16
	if c.Admin.SSHPort != 0 {
		mgmt = append(mgmt, uint16(c.Admin.SSHPort))
	}
	for _, p := range c.Admin.WebPorts {
		mgmt = append(mgmt, uint16(p))
	}
	for _, p := range mgmt {
		what := "management"
		if p == uint16(c.Admin.SSHPort) {
			what = "SSH"
		}
		ch.Rules = append(ch.Rules,
			Rule{Match: []Match{IifIn("uplinks"), SaddrIn(false, "admin4"), DPort("tcp", p, p)}, Verdict: Accept, Comment: what + " from admin networks"},
			Rule{Match: []Match{IifIn("uplinks"), SaddrIn(true, "admin6"), DPort("tcp", p, p)}, Verdict: Accept, Comment: what + " from admin networks"})
	}
	ch.Rules = append(ch.Rules, droppedRules()...) // netcfg/dropped.go
	return ch
}

// split divides prefixes by family into nft set element text. A network inside another one
// listed is left out: an interval set refuses overlapping elements.
func split(ps []config.Prefix) (v4, v6 []string) {
	for i, p := range ps {
		if covered(ps, i) {
			continue
		}
		s := p.Masked().String()
		if p.IsSingleIP() {
			s = p.Addr().String()
		}
		if p.Addr().Is4() {
			v4 = append(v4, s)
		} else {
			v6 = append(v6, s)
		}
	}
	return v4, v6
}

func covered(ps []config.Prefix, i int) bool {
	for j, q := range ps {
		if j != i && q.Bits() <= ps[i].Bits() && q.Contains(ps[i].Addr()) && (q.Bits() < ps[i].Bits() || j < i) {
			return true
		}
	}
	return false
}

// Describe is the human summary `appliance check` prints above the ruleset.
func Describe(c *config.Config) string {
	s := fmt.Sprintf("site %q: LAN %s on %s, PBX %s\n", c.Site, prefixes(c.LAN.Subnets()), c.LAN.Interface, c.PBX.Address)
	for _, u := range c.Uplink.All() {
		s += fmt.Sprintf("uplink %s: %s\n", u.Role, u)
	}
	return s
}

func prefixes(ps []config.Prefix) string {
	a, b := split(ps)
	return fmt.Sprint(append(a, b...))
}
