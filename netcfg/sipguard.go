package netcfg

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
)

// Kernel backstops for sipguard (package sipguard does the detection in user space):
//
//   - sip_ratelimit: a per-source packet rate limit on the PBX's SIP port from the uplinks
//     (an nft meter: a dynamic set whose elements carry a limit), for floods user space
//     cannot keep up with. Trusted peers and admin networks are exempt.
//   - sip_tollfraud: UDP INVITEs whose request line dials a denied destination are dropped on
//     their way out to the internet, so a fraudulent call never reaches a trunk, whether the
//     PBX was tricked by an internet caller (before sipguard has blocked it) or by an
//     extension on the LAN (which is never blocked). Inbound ones are let through to the PBX
//     on purpose: sipguard sees them on the LAN side and blocks their source. It is a fixed-offset match on the
//     start of the UDP payload ("INVITE sip:+881", "INVITE sip:00881", "INVITE sip:011881"),
//     generated from [sipguard] deny_prefixes / home_country. SIP over TCP or TLS cannot be
//     matched this way (the request line is not at a fixed offset, or is encrypted): there
//     sipguard alerts and blocks the source.

// International dialling forms a request URI may use.
var intlForms = []string{"+", "00", "011"}

type payloadMatch struct {
	off    int // bytes after the start of the UDP payload
	data   []byte
	invert bool
}

// UDPPayloadPrefix matches packets whose transport payload (after an 8-byte UDP header)
// starts with s. A register holds 16 bytes, so longer strings become several matches.
func UDPPayloadPrefix(s string) []Match {
	var out []Match
	for off := 0; off < len(s); off += 16 {
		out = append(out, payloadMatch{off: off, data: []byte(s[off:min(off+16, len(s))])})
	}
	return out
}

// UDPPayloadNotPrefix matches packets whose payload does not start with s (at most 16 bytes).
func UDPPayloadNotPrefix(s string) Match { return payloadMatch{data: []byte(s), invert: true} }

func (m payloadMatch) text() string {
	op := ""
	if m.invert {
		op = "!= "
	}
	return fmt.Sprintf("@th,%d,%d %s0x%x", (8+m.off)*8, len(m.data)*8, op, m.data)
}

func (m payloadMatch) exprs(map[string]*nftables.Set) []expr.Any {
	op := expr.CmpOpEq
	if m.invert {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: uint32(8 + m.off), Len: uint32(len(m.data))},
		&expr.Cmp{Op: op, Register: 1, Data: m.data},
	}
}

type meter struct {
	set  string
	v6   bool
	rate uint32
}

// RateOver adds the packet's source to a dynamic set and matches once that source exceeds
// rate packets a second (burst: one second's worth).
func RateOver(set string, v6 bool, rate uint32) Match { return meter{set, v6, rate} }

func (m meter) text() string {
	fam := "ip"
	if m.v6 {
		fam = "ip6"
	}
	return fmt.Sprintf("add @%s { %s saddr limit rate over %d/second burst %d packets }", m.set, fam, m.rate, m.rate)
}

func (m meter) exprs(sets map[string]*nftables.Set) []expr.Any {
	s := sets[m.set]
	off, n := uint32(12), uint32(4)
	if m.v6 {
		off, n = 8, 16
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: uint32(unix.NFT_DYNSET_OP_ADD),
			Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(m.rate), Over: true, Unit: expr.LimitTimeSecond, Burst: m.rate}}},
	}
}

// sipguardRules adds the two chains when sipguard is on.
func sipguardRules(c *config.Config, t *Table) {
	sg := c.SIPGuard
	if !sg.Enabled {
		return
	}
	if rate := uint32(sg.KernelRate); rate > 0 && c.PBX.SIPPort != 0 {
		t.Sets = append(t.Sets,
			&Set{Name: "sip_rate4", Type: TypeIPv4, Dynamic: true, Timeout: true, Expire: time.Minute, Size: 65536, Comment: "SIP packet rate per source"},
			&Set{Name: "sip_rate6", Type: TypeIPv6, Dynamic: true, Timeout: true, Expire: time.Minute, Size: 65536, Comment: "SIP packet rate per source"})
		ch := &Chain{Name: "sip_ratelimit", Type: "filter", Hook: "forward", Priority: -20, Policy: "accept", Rules: []Rule{
			{Match: []Match{IifNotIn("uplinks")}, Verdict: Return, Comment: "not from the internet"},
			{Match: []Match{SaddrIn(false, "sip_peers4")}, Verdict: Return, Comment: "trusted SIP peers are not limited"},
			{Match: []Match{SaddrIn(true, "sip_peers6")}, Verdict: Return, Comment: "trusted SIP peers are not limited"},
			{Match: []Match{SaddrIn(false, "admin4")}, Verdict: Return, Comment: "admin networks are not limited"},
			{Match: []Match{SaddrIn(true, "admin6")}, Verdict: Return, Comment: "admin networks are not limited"},
		}}
		p := uint16(c.PBX.SIPPort)
		for _, proto := range []string{"udp", "tcp"} {
			ch.Rules = append(ch.Rules,
				Rule{Match: []Match{NFProto("ipv4"), DPort(proto, p, p), RateOver("sip_rate4", false, rate)}, Verdict: Drop, Comment: "SIP flood from one source"},
				Rule{Match: []Match{NFProto("ipv6"), DPort(proto, p, p), RateOver("sip_rate6", true, rate)}, Verdict: Drop, Comment: "SIP flood from one source"})
		}
		t.Chains = append(t.Chains, ch)
	}
	deny := sg.DenyPrefixes
	home := strings.TrimPrefix(sg.HomeCountry, "+")
	if len(deny) == 0 && home == "" {
		return
	}
	ch := &Chain{Name: "sip_tollfraud", Type: "filter", Hook: "forward", Priority: -10, Policy: "accept", Rules: []Rule{
		{Match: []Match{OifNotIn("uplinks")}, Verdict: Return, Comment: "not towards a trunk or the internet"},
		{Match: []Match{UDPPayloadNotPrefix("INVITE ")}, Verdict: Return, Comment: "not a SIP INVITE over UDP"},
	}}
	for _, form := range intlForms {
		// Denied destinations first: one may lie inside the home country code (+1876
		// within +1), and sipguard denies it there too.
		for _, d := range deny {
			ch.Rules = append(ch.Rules, Rule{Match: append([]Match{Proto("udp")}, invite(form+d)...), Verdict: Drop, Comment: "toll fraud: denied destination +" + d})
		}
		if home != "" {
			ch.Rules = append(ch.Rules, Rule{Match: append([]Match{Proto("udp")}, invite(form+home)...), Verdict: Return, Comment: "home country"})
		}
		if home != "" {
			ch.Rules = append(ch.Rules, Rule{Match: append([]Match{Proto("udp")}, invite(form)...), Verdict: Drop, Comment: "toll fraud: outside the home country"})
		}
	}
	t.Chains = append(t.Chains, ch)
}

// invite matches a UDP INVITE whose request URI starts with sip:<number>; nft merges
// adjacent payload matches into one load of up to 16 bytes, so this splits the same way.
func invite(number string) []Match { return UDPPayloadPrefix("INVITE sip:" + number) }

type oifNotIn string

// OifNotIn matches packets not leaving through an interface in the named set.
func OifNotIn(set string) Match { return oifNotIn(set) }

func (m oifNotIn) text() string { return "oifname != @" + string(m) }
func (m oifNotIn) exprs(sets map[string]*nftables.Set) []expr.Any {
	s := sets[string(m)]
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: true},
	}
}
