package netcfg

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/officeedge/appliance/internal/config"
)

// Reply routing, as mwan3 does it: a connection that comes in on an uplink gets that
// uplink's mark in conntrack, and its packets from the LAN and from the box itself carry the
// mark as their packet mark. Package wan owns the other half, an ip rule per uplink sending
// marked packets to a routing table with that uplink's default route. So a trunk's OPTIONS
// or an admin's ping to the standby's address is answered out of the standby with its own
// source address (ISPs that filter spoofed sources, BCP 38, drop it anywhere else), while
// the office's own new connections follow the active uplink. Without policy routing in the
// kernel the marks are set and unused: replies then follow the active uplink, as before.

// ReplyMarkMask is the part of the packet and conntrack mark used for reply routing; it is
// kept apart from tailscale's 0xff0000.
const ReplyMarkMask uint32 = 0x3f00

// ReplyMark is the mark of the uplink at index i of config's Uplink.All() (0 primary).
func ReplyMark(i int) uint32 { return uint32(i+1) << 8 & ReplyMarkMask }

// replyRouteRules adds the chains that mark connections by the uplink they came in on.
func replyRouteRules(c *config.Config, t *Table) {
	var in []Rule
	for i, u := range c.Uplink.All() {
		in = append(in, Rule{Match: []Match{Iif(u.Interface), CtState("new")}, Verdict: setCtMark(ReplyMark(i)),
			Comment: "a connection that came in on " + u.Interface + " is answered through it"})
	}
	in = append(in, Rule{Match: []Match{IifNotIn("uplinks"), ctMarked{}}, Verdict: markFromCt{},
		Comment: "replies from the LAN leave through the uplink their connection came in on"})
	// Mangle priority: after conntrack (-200) has found the connection, before the routing
	// decision and before the DNAT chain.
	t.Chains = append(t.Chains,
		&Chain{Name: "reply_mark", Type: "filter", Hook: "prerouting", Priority: -150, Policy: "accept", Rules: in},
		// A route chain: the kernel looks the route up again when the mark changes.
		&Chain{Name: "reply_mark_out", Type: "route", Hook: "output", Priority: -150, Policy: "accept", Rules: []Rule{
			{Match: []Match{ctMarked{}}, Verdict: markFromCt{}, Comment: "the box's replies leave through the uplink their connection came in on"},
		}})
}

// withoutReplyMarks is t without the reply-routing chains.
func (t *Table) withoutReplyMarks() *Table {
	c := *t
	c.Chains = nil
	for _, ch := range t.Chains {
		if ch.Name != "reply_mark" && ch.Name != "reply_mark_out" {
			c.Chains = append(c.Chains, ch)
		}
	}
	return &c
}

// ctMarked matches connections with a reply-routing mark.
type ctMarked struct{}

func (ctMarked) text() string {
	return fmt.Sprintf("ct mark and 0x%08x != 0x00000000", ReplyMarkMask)
}
func (ctMarked) exprs(map[string]*nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(ReplyMarkMask), Xor: le32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: le32(0)},
	}
}

// setCtMark sets the connection's mark (a statement: the packet goes on).
type setCtMark uint32

func (v setCtMark) text() string { return fmt.Sprintf("ct mark set 0x%08x", uint32(v)) }
func (v setCtMark) exprs() []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: le32(uint32(v))},
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
	}
}

// markFromCt copies the connection's reply-routing mark to the packet (a statement).
type markFromCt struct{}

func (markFromCt) text() string {
	return fmt.Sprintf("meta mark set ct mark and 0x%08x", ReplyMarkMask)
}
func (markFromCt) exprs() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: le32(ReplyMarkMask), Xor: le32(0)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}
