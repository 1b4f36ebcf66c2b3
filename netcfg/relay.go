package netcfg

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/officeedge/appliance/internal/config"
)

// The voice relay's tunnel ([relay]; package relay/box runs it and owns its ip rule and
// routing table): to the firewall the tunnel interface is one more uplink, so the trunks'
// SIP and RTP the relay sends through it meet the same blocklist, port forwards and filters
// as on the lines, and what leaves through it is masqueraded to the box's tunnel address.
// A connection that came in through the tunnel is marked VoiceMark in conntrack and its
// replies from the LAN carry VoiceMark, so the relay part's rule sends them back into the
// tunnel (answered from the address the trunk called) rather than out of the active line.

// relayRules adds what the voice relay's tunnel needs ([relay]); nothing when it is off.
func relayRules(c *config.Config, t *Table) {
	r := c.Relay
	if !r.Enabled() {
		return
	}
	for _, s := range t.Sets {
		if s.Name == "uplinks" {
			s.Elems = append(s.Elems, r.Interface)
		}
	}
	// After reply_mark (-150), whose "meta mark set ct mark and 0x3f00" would clear the bit;
	// before the routing decision.
	t.Chains = append(t.Chains, &Chain{Name: "relay_mark", Type: "filter", Hook: "prerouting", Priority: -140, Policy: "accept", Rules: []Rule{
		{Match: []Match{Iif(r.Interface), CtState("new")}, Verdict: orCtMark(VoiceMark),
			Comment: "a connection that came in through the relay is answered through it"},
		{Match: []Match{IifNotIn("uplinks"), ctHasMark(VoiceMark)}, Verdict: setMarkBits(VoiceMark),
			Comment: "replies from the LAN go back through the relay"},
	}})
}

// ctHasMark matches connections whose mark has all the bits of m.
type ctHasMark uint32

func (m ctHasMark) text() string {
	return fmt.Sprintf("ct mark and 0x%08x == 0x%08x", uint32(m), uint32(m))
}
func (m ctHasMark) exprs(map[string]*nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(uint32(m)), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: le32(uint32(m))},
	}
}

// orCtMark sets the bits of v in the connection's mark, keeping the others (a statement).
type orCtMark uint32

func (v orCtMark) text() string { return fmt.Sprintf("ct mark set ct mark or 0x%08x", uint32(v)) }
func (v orCtMark) exprs() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		// nft compiles "x or v" as (x & ^v) ^ v.
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(^uint32(v)), Xor: le32(uint32(v))},
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
	}
}
