package netcfg

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
)

// VoiceMark is the packet-mark bit of the office's voice (the PBX's SIP and RTP with the
// trunks): the voice routes (the relay tunnel, a flooded line's move
// to the modem) select it with ip rules, and the shaper's classes follow it. Kept apart from
// ReplyMarkMask (0x3f00) and tailscale's 0xff0000.
const VoiceMark uint32 = 0x4000

// Egress classes of the uplinks' shapers as skb priorities (major 1: the shaper's HTB root):
// nft `meta priority set` and the relay tunnel's own sockets (SO_PRIORITY) pick the class
// directly, without tc filters.
const (
	PriorityVoice       uint32 = 0x00010010 // 1:10
	PriorityInteractive uint32 = 0x00010020 // 1:20 DNS, TCP handshakes and ACKs, small packets
	PriorityBulk        uint32 = 0x00010030 // 1:30 everything else (the HTB default)
)

// DSCP code points the uplinks' egress carries (RFC 4594): EF for the media, CS3 for SIP.
const (
	DSCPEF  = 46
	DSCPCS3 = 24
)

// smallPacket is the IP length under which a packet is interactive (pure TCP ACKs, DNS,
// pings, keepalives): it costs the line little and holding it back stalls the sender.
const smallPacket = 128

// voiceRules marks the office's voice and classifies the uplinks' egress for the shapers
// ([voice]). Only voice leaving for the internet is marked: the mark routes (the relay's and
// the voice move's ip rules), and a trunk's packet to the PBX marked with it would be
// routed back out.
func voiceRules(c *config.Config, t *Table) {
	// The office's own networks: the PBX's media to a VPN phone is not leaving for the
	// internet, and must not follow the voice routes.
	local := c.LAN.Subnets()
	if c.VPN.Enabled && c.VPN.Address.IsValid() {
		local = append(local, config.Prefix{Prefix: c.VPN.Address.Masked()})
	}
	l4, l6 := split(local)
	t.Sets = append(t.Sets,
		&Set{Name: "office4", Type: TypeIPv4, Interval: true, Elems: l4, Comment: "the office's own networks (LAN, VPN)"},
		&Set{Name: "office6", Type: TypeIPv6, Interval: true, Elems: l6, Comment: "the office's own networks (LAN, VPN)"})
	mark := []Rule{
		{Match: []Match{addrMatch{dst: true, set: "office4"}}, Verdict: Return, Comment: "not leaving the office"},
		{Match: []Match{addrMatch{v6: true, dst: true, set: "office6"}}, Verdict: Return, Comment: "not leaving the office"},
	}
	p := c.PBX
	for _, pbx := range []netip.Addr{p.Address.Addr, p.Address6.Addr} {
		if !pbx.IsValid() {
			continue
		}
		v6, fam := pbx.Is6(), " (IPv6)"
		if !v6 {
			fam = ""
		}
		from := []Match{IifIn("lan"), Saddr(pbx)}
		if !p.RTPPorts.IsZero() {
			mark = append(mark, Rule{Match: append(from[:2:2], srcPorts("udp", p.RTPPorts)), Verdict: setMarkBits(VoiceMark), Comment: "voice: the PBX's RTP" + fam})
		}
		peers := addrMatch{v6: v6, dst: true, set: "sip_peers4"}
		if v6 {
			peers.set = "sip_peers6"
		}
		for _, tr := range p.SIPTransports {
			proto := string(tr)
			mark = append(mark,
				Rule{Match: append(from[:2:2], peers, DPort(proto, uint16(p.SIPPort), uint16(p.SIPPort))), Verdict: setMarkBits(VoiceMark), Comment: "voice: the PBX's SIP to the trunks" + fam},
				Rule{Match: append(from[:2:2], peers, srcPorts(proto, p.SIPPort.Range())), Verdict: setMarkBits(VoiceMark), Comment: "voice: the PBX's SIP to the trunks" + fam})
		}
		if p.SIPTLSPort != 0 {
			mark = append(mark, Rule{Match: append(from[:2:2], peers, DPort("tcp", uint16(p.SIPTLSPort), uint16(p.SIPTLSPort))), Verdict: setMarkBits(VoiceMark), Comment: "voice: the PBX's SIP TLS to the trunks" + fam})
		}
	}
	// After reply_mark (-150), which sets the whole packet mark from the connection's.
	t.Chains = append(t.Chains, &Chain{Name: "voice_mark", Type: "filter", Hook: "prerouting", Priority: -140, Policy: "accept", Rules: mark})
	t.Chains = append(t.Chains, classifyChain(c))
}

// classifyChain picks each uplink-bound packet's shaper class (netcfg.Priority*) and marks
// voice with its DSCP. Later rules win: voice is classified last.
func classifyChain(c *config.Config) *Chain {
	voice := markHas(VoiceMark)
	rules := []Rule{
		{Match: []Match{OifNotIn("uplinks")}, Verdict: Return, Comment: "not to the internet"},
		{Match: []Match{priorityIs(PriorityVoice)}, Verdict: Return, Comment: "voice by its own socket (the relay tunnel)"},
		{Match: []Match{DPort("udp", 53, 53)}, Verdict: classify{prio: PriorityInteractive}, Comment: "interactive: DNS"},
		{Match: []Match{DPort("tcp", 53, 53)}, Verdict: classify{prio: PriorityInteractive}, Comment: "interactive: DNS"},
		{Match: []Match{tcpSYN{}}, Verdict: classify{prio: PriorityInteractive}, Comment: "interactive: TCP handshakes"},
		{Match: []Match{lengthBelow(smallPacket)}, Verdict: classify{prio: PriorityInteractive}, Comment: "interactive: small packets (ACKs, pings)"},
		{Match: []Match{NFProto("ipv4"), voice}, Verdict: classify{prio: PriorityVoice, dscp: DSCPEF}, Comment: "voice first, DSCP EF"},
		{Match: []Match{NFProto("ipv6"), voice}, Verdict: classify{prio: PriorityVoice, dscp: DSCPEF, v6: true}, Comment: "voice first, DSCP EF"},
	}
	p := c.PBX
	for _, fam := range []string{"ipv4", "ipv6"} {
		if c.VPN.Enabled && c.VPN.ListenPort != 0 {
			// The WireGuard phones' tunnel is voice for the shaper, but it carries no
			// VoiceMark: the voice routes (the relay, the move to the modem) would take the
			// box's answers to the phones off the line the phones dialled.
			rules = append(rules, Rule{Match: []Match{NFProto(fam), srcPorts("udp", c.VPN.ListenPort.Range())}, Verdict: classify{prio: PriorityVoice, dscp: DSCPEF, v6: fam == "ipv6"}, Comment: "voice first: the WireGuard phones' tunnel, DSCP EF"})
		}
		for _, tr := range p.SIPTransports {
			for _, m := range []Match{DPort(string(tr), uint16(p.SIPPort), uint16(p.SIPPort)), srcPorts(string(tr), p.SIPPort.Range())} {
				rules = append(rules, Rule{Match: []Match{NFProto(fam), voice, m}, Verdict: classify{prio: PriorityVoice, dscp: DSCPCS3, v6: fam == "ipv6"}, Comment: "voice first: SIP, DSCP CS3"})
			}
		}
	}
	return &Chain{Name: "voice_class", Type: "filter", Hook: "postrouting", Priority: -140, Policy: "accept", Rules: rules}
}

// srcPorts matches a TCP or UDP source port range.
func srcPorts(proto string, r config.PortRange) Match {
	return l4{proto: proto, sport: [2]uint16{r.Lo, r.Hi}}
}

// markHas matches packets whose mark has all of bits.
type markHas uint32

func (m markHas) text() string {
	return fmt.Sprintf("meta mark and 0x%08x == 0x%08x", uint32(m), uint32(m))
}
func (m markHas) exprs(map[string]*nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(uint32(m)), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: le32(uint32(m))},
	}
}

// priorityIs matches the packet's skb priority (the shaper class its socket picked).
type priorityIs uint32

func (m priorityIs) text() string { return "meta priority " + classText(uint32(m)) }
func (m priorityIs) exprs(map[string]*nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPRIORITY, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: le32(uint32(m))},
	}
}

// lengthBelow matches packets shorter than n bytes (the IP packet).
type lengthBelow uint32

func (m lengthBelow) text() string { return fmt.Sprintf("meta length < %d", uint32(m)) }
func (m lengthBelow) exprs(map[string]*nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyLEN, Register: 1},
		// nft compares in network order: the length is turned big-endian first.
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: be32(uint32(m))},
	}
}

// tcpSYN matches TCP segments with SYN set (handshakes, both ways).
type tcpSYN struct{}

func (tcpSYN) text() string { return "tcp flags & syn == syn" }
func (tcpSYN) exprs(map[string]*nftables.Set) []expr.Any {
	const syn = 0x02
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{syn}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{syn}},
	}
}

// setMarkBits sets bits in the packet mark, keeping the others (a statement).
type setMarkBits uint32

func (v setMarkBits) text() string {
	return fmt.Sprintf("meta mark set meta mark or 0x%08x", uint32(v))
}
func (v setMarkBits) exprs() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(^uint32(v)), Xor: le32(uint32(v))},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

// classify sets the packet's shaper class and, when dscp is set, its DSCP (a statement; the
// rule's match must pin the family: the DSCP sits in different bits of IPv4 and IPv6).
type classify struct {
	prio uint32
	dscp uint8
	v6   bool
}

func classText(p uint32) string { return fmt.Sprintf("%x:%x", p>>16, p&0xffff) }

var dscpNames = map[uint8]string{DSCPEF: "ef", DSCPCS3: "cs3"}

func (v classify) text() string {
	s := "meta priority set " + classText(v.prio)
	switch {
	case v.dscp == 0:
	case v.v6:
		s += " ip6 dscp set " + dscpNames[v.dscp]
	default:
		s += " ip dscp set " + dscpNames[v.dscp]
	}
	return s
}

func (v classify) exprs() []expr.Any {
	e := []expr.Any{
		&expr.Immediate{Register: 1, Data: le32(v.prio)},
		&expr.Meta{Key: expr.MetaKeyPRIORITY, Register: 1, SourceRegister: true},
	}
	if v.dscp == 0 {
		return e
	}
	// The first two bytes of the header, DSCP replaced, ECN and the rest kept (as nft does).
	mask, xor := []byte{0xff, 0x03}, []byte{0, v.dscp << 2} // IPv4: version+IHL, TOS
	w := &expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseNetworkHeader, Len: 2,
		CsumType: expr.CsumTypeInet, CsumOffset: 10}
	if v.v6 { // version(4) | traffic class(8) | flow label: DSCP is bits 4-9
		mask, xor = []byte{0xf0, 0x3f}, []byte{v.dscp >> 2, v.dscp << 6}
		w.CsumType, w.CsumOffset = expr.CsumTypeNone, 0
	}
	return append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Len: 2},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: mask, Xor: xor},
		w)
}

func be32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// Words for the status page's firewall view (explain.go).
func (m markHas) words() string    { return "voice" }
func (m priorityIs) words() string { return "already in the voice class" }
func (m lengthBelow) words() string {
	return fmt.Sprintf("packets under %d bytes", uint32(m))
}
func (tcpSYN) words() string      { return "TCP handshakes" }
func (setMarkBits) words() string { return "marked as voice" }
func (v classify) words() string {
	names := map[uint32]string{PriorityVoice: "sent first (voice)", PriorityInteractive: "sent before bulk (interactive)", PriorityBulk: "sent with the rest"}
	s := names[v.prio]
	if v.dscp != 0 {
		s += ", DSCP " + strings.ToUpper(dscpNames[v.dscp])
	}
	return s
}
