package netcfg

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The ruleset is described once, as data, and both rendered as nft text (for `appliance
// check` and people) and compiled to netlink expressions (the box has no nft binary). Each
// match knows both forms, so the two cannot drift apart; a root test loads the text with
// nft and the expressions over netlink and compares the kernel's listings of both.

// Table is the appliance's own nftables table.
type Table struct {
	Name   string
	Sets   []*Set
	Chains []*Chain
}

// SetType is the key type of a named set.
type SetType string

// Set key types used by the appliance.
const (
	TypeIPv4   SetType = "ipv4_addr"
	TypeIPv6   SetType = "ipv6_addr"
	TypeIfname SetType = "ifname"
)

// Set is a named set; Elems are addresses, prefixes or interface names as text.
type Set struct {
	Name     string
	Type     SetType
	Interval bool // elements may be networks
	Timeout  bool // elements may expire
	Counter  bool // each element counts the packets it matched
	// Dynamic sets are filled by rules (meters); Expire and Size apply to their elements.
	Dynamic bool
	Expire  time.Duration
	Size    uint32
	Comment string
	Elems   []string
}

// Chain is a base chain.
type Chain struct {
	Name     string
	Type     string // filter or nat
	Hook     string // prerouting, input, forward, output, postrouting
	Priority int
	Policy   string // accept or drop
	Rules    []Rule
}

// Rule is matches, a counter, and a verdict; every rule counts its hits for the status page.
type Rule struct {
	Match   []Match
	Verdict Verdict
	Comment string
}

// Match is one condition of a rule.
type Match interface {
	text() string
	exprs(sets map[string]*nftables.Set) []expr.Any
}

// Verdict ends a rule.
type Verdict interface {
	text() string
	exprs() []expr.Any
}

// ---- matches ----

type ifnameIn struct {
	out    bool
	set    string
	invert bool
}

// IifIn matches packets that came in on an interface in the named ifname set.
func IifIn(set string) Match { return ifnameIn{set: set} }

// IifNotIn matches packets that did not come in on an interface in the named set.
func IifNotIn(set string) Match { return ifnameIn{set: set, invert: true} }

// OifIn matches packets leaving through an interface in the named ifname set.
func OifIn(set string) Match { return ifnameIn{out: true, set: set} }

func (m ifnameIn) key() (string, expr.MetaKey) {
	if m.out {
		return "oifname", expr.MetaKeyOIFNAME
	}
	return "iifname", expr.MetaKeyIIFNAME
}

func (m ifnameIn) text() string {
	k, _ := m.key()
	if m.invert {
		return k + " != @" + m.set
	}
	return k + " @" + m.set
}

func (m ifnameIn) exprs(sets map[string]*nftables.Set) []expr.Any {
	_, key := m.key()
	s := sets[m.set]
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: m.invert},
	}
}

type iifname string

// Iif matches one input interface by name.
func Iif(name string) Match { return iifname(name) }

func (m iifname) text() string { return fmt.Sprintf("iifname %q", string(m)) }
func (m iifname) exprs(map[string]*nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(string(m))},
	}
}

// addrMatch matches the source or destination address of one IP family against a set or an address.
type addrMatch struct {
	v6   bool
	dst  bool
	set  string     // named set, or
	addr netip.Addr // one address
}

// SaddrIn matches source addresses in a named set of the set's family.
func SaddrIn(v6 bool, set string) Match { return addrMatch{v6: v6, set: set} }

// Daddr matches one destination address.
func Daddr(a netip.Addr) Match { return addrMatch{v6: a.Is6(), dst: true, addr: a} }

func (m addrMatch) text() string {
	s := "ip "
	if m.v6 {
		s = "ip6 "
	}
	if m.dst {
		s += "daddr "
	} else {
		s += "saddr "
	}
	if m.set != "" {
		return s + "@" + m.set
	}
	return s + m.addr.String()
}

func (m addrMatch) exprs(sets map[string]*nftables.Set) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if m.v6 {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16
	}
	if m.dst {
		off += n
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
	}
	if m.set != "" {
		s := sets[m.set]
		return append(e, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID})
	}
	return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: m.addr.AsSlice()})
}

// l4 matches a transport protocol and optionally its source or destination port(s).
type l4 struct {
	proto          string // tcp, udp, icmp, icmpv6
	dport, sport   [2]uint16
	icmpType       string
	icmpTypeNumber byte
}

// Proto matches a transport protocol.
func Proto(p string) Match { return l4{proto: p} }

// DPort matches a TCP or UDP destination port range (lo == hi for one port).
func DPort(proto string, lo, hi uint16) Match { return l4{proto: proto, dport: [2]uint16{lo, hi}} }

// Ports matches both the source and the destination port.
func Ports(proto string, sport, dport uint16) Match {
	return l4{proto: proto, sport: [2]uint16{sport, sport}, dport: [2]uint16{dport, dport}}
}

var icmpTypes = map[string]byte{
	"echo-request": 8, "destination-unreachable": 3, "time-exceeded": 11, "parameter-problem": 12,
	"v6:echo-request": 128, "v6:packet-too-big": 2, "v6:nd-router-advert": 134,
	"v6:nd-neighbor-solicit": 135, "v6:nd-neighbor-advert": 136, "v6:destination-unreachable": 1,
	"v6:time-exceeded": 3, "v6:parameter-problem": 4,
}

// ICMPType matches one ICMP (proto "icmp") or ICMPv6 (proto "icmpv6") type by its nft name.
func ICMPType(proto, name string) Match {
	k := name
	if proto == "icmpv6" {
		k = "v6:" + name
	}
	n, ok := icmpTypes[k]
	if !ok {
		panic("netcfg: unknown icmp type " + k)
	}
	return l4{proto: proto, icmpType: name, icmpTypeNumber: n}
}

var l4protos = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "icmp": unix.IPPROTO_ICMP, "icmpv6": unix.IPPROTO_ICMPV6}

func portText(r [2]uint16) string {
	if r[0] == r[1] {
		return fmt.Sprint(r[0])
	}
	return fmt.Sprintf("%d-%d", r[0], r[1])
}

func (m l4) text() string {
	var parts []string
	if m.sport[0] != 0 {
		parts = append(parts, m.proto+" sport "+portText(m.sport))
	}
	if m.dport[0] != 0 {
		parts = append(parts, m.proto+" dport "+portText(m.dport))
	}
	if m.icmpType != "" {
		parts = append(parts, m.proto+" type "+m.icmpType)
	}
	if len(parts) == 0 {
		return "meta l4proto " + m.proto
	}
	return strings.Join(parts, " ")
}

func (m l4) exprs(map[string]*nftables.Set) []expr.Any {
	var e []expr.Any
	if m.proto == "icmp" {
		// nft ties icmp to IPv4 in an inet table.
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}})
	}
	if m.proto == "icmpv6" {
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}})
	}
	e = append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4protos[m.proto]}})
	port := func(off uint32, r [2]uint16) {
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2})
		if r[0] == r[1] {
			e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(r[0])})
		} else {
			e = append(e, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(r[0]), ToData: be16(r[1])})
		}
	}
	if m.sport[0] != 0 {
		port(0, m.sport)
	}
	if m.dport[0] != 0 {
		port(2, m.dport)
	}
	if m.icmpType != "" {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{m.icmpTypeNumber}})
	}
	return e
}

// ctState matches conntrack states.
type ctState []string

// CtState matches any of the conntrack states (established, related, invalid, new).
func CtState(states ...string) Match { return ctState(states) }

var ctBits = map[string]uint32{
	"invalid": expr.CtStateBitINVALID, "established": expr.CtStateBitESTABLISHED,
	"related": expr.CtStateBitRELATED, "new": expr.CtStateBitNEW,
}

func (m ctState) text() string { return "ct state " + strings.Join(m, ",") }
func (m ctState) exprs(map[string]*nftables.Set) []expr.Any {
	var mask uint32
	for _, s := range m {
		mask |= ctBits[s]
	}
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(mask), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: le32(0)},
	}
}

// ctDNAT matches connections whose destination the box rewrote (port forwards).
type ctDNAT struct{}

// CtStatusDNAT matches packets of connections that were port-forwarded (DNAT).
func CtStatusDNAT() Match { return ctDNAT{} }

func (ctDNAT) text() string { return "ct status dnat" }
func (ctDNAT) exprs(map[string]*nftables.Set) []expr.Any {
	const ipsDstNAT = 1 << 5
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(ipsDstNAT), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: le32(0)},
	}
}

// limit caps a rule to a packet rate.
type limit struct{ rate, burst uint32 }

// Limit matches at most rate packets a second, with a burst.
func Limit(rate, burst uint32) Match { return limit{rate, burst} }

func (m limit) text() string {
	return fmt.Sprintf("limit rate %d/second burst %d packets", m.rate, m.burst)
}
func (m limit) exprs(map[string]*nftables.Set) []expr.Any {
	return []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(m.rate), Unit: expr.LimitTimeSecond, Burst: m.burst}}
}

// ---- verdicts ----

type simpleVerdict expr.VerdictKind

// Accept, Drop and Return end a rule with that verdict.
var (
	Accept Verdict = simpleVerdict(expr.VerdictAccept)
	Drop   Verdict = simpleVerdict(expr.VerdictDrop)
	Return Verdict = simpleVerdict(expr.VerdictReturn)
)

func (v simpleVerdict) text() string {
	switch expr.VerdictKind(v) {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	}
	return "return"
}
func (v simpleVerdict) exprs() []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictKind(v)}}
}

type masquerade struct{}

// Masquerade rewrites the source to the output interface's address; unlike a fixed SNAT it
// follows the flow when its output interface changes.
var Masquerade Verdict = masquerade{}

func (masquerade) text() string      { return "masquerade" }
func (masquerade) exprs() []expr.Any { return []expr.Any{&expr.Masq{}} }

// dnat forwards to a LAN host, keeping the port when port is 0.
type dnat struct {
	to   netip.Addr
	port uint16
}

// DNAT forwards a connection to an IPv4 host on the LAN, to port (0 keeps the port).
func DNAT(to netip.Addr, port uint16) Verdict { return dnat{to, port} }

func (v dnat) text() string {
	if v.port == 0 {
		return "dnat ip to " + v.to.String()
	}
	return fmt.Sprintf("dnat ip to %s:%d", v.to, v.port)
}
func (v dnat) exprs() []expr.Any {
	e := []expr.Any{&expr.Immediate{Register: 1, Data: v.to.AsSlice()}}
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
	if v.port != 0 {
		e = append(e, &expr.Immediate{Register: 2, Data: be16(v.port)})
		nat.RegProtoMin = 2
		nat.Specified = true
	}
	return append(e, nat)
}

// ---- helpers ----

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// priorityNames are the names nft gives standard hook priorities.
var priorityNames = map[int]string{-300: "raw", -100: "dstnat", 0: "filter", 100: "srcnat"}

// Text renders the table in nft syntax, loadable with `nft -f`.
func (t *Table) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", t.Name)
	for _, s := range t.Sets {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.Name, s.Type)
		var flags []string
		if s.Interval {
			flags = append(flags, "interval")
		}
		if s.Dynamic {
			flags = append(flags, "dynamic")
		}
		if s.Timeout {
			flags = append(flags, "timeout")
		}
		if len(flags) > 0 {
			fmt.Fprintf(&b, "\t\tflags %s\n", strings.Join(flags, ","))
		}
		if s.Counter {
			b.WriteString("\t\tcounter\n")
		}
		if s.Expire > 0 {
			fmt.Fprintf(&b, "\t\ttimeout %ds\n", int(s.Expire.Seconds()))
		}
		if s.Size > 0 {
			fmt.Fprintf(&b, "\t\tsize %d\n", s.Size)
		}
		if s.Comment != "" {
			fmt.Fprintf(&b, "\t\tcomment %q\n", s.Comment)
		}
		if len(s.Elems) > 0 {
			el := make([]string, len(s.Elems))
			for i, e := range s.Elems {
				el[i] = e
				if s.Type == TypeIfname {
					el[i] = fmt.Sprintf("%q", e)
				}
			}
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(el, ", "))
		}
		b.WriteString("\t}\n\n")
	}
	for i, c := range t.Chains {
		prio := fmt.Sprint(c.Priority)
		if name, ok := priorityNames[c.Priority]; ok {
			prio = name
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype %s hook %s priority %s; policy %s;\n", c.Name, c.Type, c.Hook, prio, c.Policy)
		for _, r := range c.Rules {
			b.WriteString("\t\t" + r.Text() + "\n")
		}
		b.WriteString("\t}\n")
		if i < len(t.Chains)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// Text renders one rule in nft syntax.
func (r Rule) Text() string {
	var parts []string
	for _, m := range r.Match {
		parts = append(parts, m.text())
	}
	parts = append(parts, "counter", r.Verdict.text())
	if r.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.Comment))
	}
	return strings.Join(parts, " ")
}
