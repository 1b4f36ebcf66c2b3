package voicemove

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
)

// RulePriority is the voice move's ip rule: after the relay's (90: voice into the tunnel
// while the relay carries it), before wan's reply rules (1001, 1002), so that while voice is
// moved a reply to the trunk leaves through the modem too. This part owns the rule: it adds
// it while voice is moved, and removes exactly it otherwise and when it stops.
const RulePriority = 95

// ruleMask is what the rule looks at: the voice bit and the reply-routing mark, which must
// be none. A packet of a flow that came in on a line (a trunk sending to that line's
// address) carries that line's address back and must leave through it, since ISPs drop
// another line's source (BCP 38): such a flow follows wan's reply rule; only the flows the
// office's packets made, masqueraded to the line they leave through, are moved.
const ruleMask = netcfg.VoiceMark | netcfg.ReplyMarkMask

// voiceRule is the rule for one family: voice (netcfg.VoiceMark) looks up table.
func voiceRule(family, table int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family, r.Priority, r.Table = family, RulePriority, table
	r.Mark = netcfg.VoiceMark
	mask := ruleMask
	r.Mask = &mask
	return r
}

func isVoiceRule(r netlink.Rule) bool {
	return r.Priority == RulePriority && r.Mark == netcfg.VoiceMark
}

// setRule makes IPv4 voice look up table (the modem's own routes, kept by wan), and removes
// a voice rule to any other table. It changes nothing that is right. IPv6 voice stays: the
// PBX's IPv6 address is in the fixed line's prefix, which the modem's ISP would drop, and
// there is no masquerade to give it the modem's.
func setRule(table int) error {
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4} {
		rules, err := netlink.RuleList(fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		right := false
		for _, r := range rules {
			if !isVoiceRule(r) {
				continue
			}
			if r.Table == table && !right {
				right = true
				continue
			}
			if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, err)
			}
		}
		if !right {
			if err := netlink.RuleAdd(voiceRule(fam, table)); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("voicemove: ip rule fwmark %#x lookup %d: %w", netcfg.VoiceMark, table, err)
	}
	return nil
}

// removeRules deletes the voice move's rules (left by this run, or by one that crashed).
func removeRules() error {
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := netlink.RuleList(fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range rules {
			if isVoiceRule(r) {
				if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("voicemove: remove ip rule priority %d: %w", RulePriority, err)
	}
	return nil
}

// hasRule says whether the voice rule to table is in the kernel (IPv4).
func hasRule(table int) bool {
	rules, err := netlink.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(rules, func(r netlink.Rule) bool { return isVoiceRule(r) && r.Table == table })
}

// voiceFlows matches the conntrack entries of the PBX's voice, the flows netcfg marks with
// VoiceMark (netcfg/voice.go): the PBX's side is its SIP or SIP TLS port or in its RTP range,
// or it talks to a SIP port, whichever end began. Only packets carry the mark, not the
// entries, so they are found by their addresses and ports.
type voiceFlows struct {
	pbx   []netip.Addr
	sip   []uint16
	rtp   config.PortRange
	proto map[uint8]bool
	// mark, when set, keeps only the flows with this reply-routing mark (they came in on
	// that line).
	mark uint32
}

func newVoiceFlows(c *config.Config) voiceFlows {
	v := voiceFlows{rtp: c.PBX.RTPPorts, proto: map[uint8]bool{unix.IPPROTO_UDP: true, unix.IPPROTO_TCP: true}}
	for _, a := range []config.Addr{c.PBX.Address, c.PBX.Address6} {
		if a.IsValid() {
			v.pbx = append(v.pbx, a.Unmap())
		}
	}
	for _, p := range []config.Port{c.PBX.SIPPort, c.PBX.SIPTLSPort} {
		if p != 0 {
			v.sip = append(v.sip, uint16(p))
		}
	}
	return v
}

func (v voiceFlows) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	if !v.proto[f.Forward.Protocol] || (v.mark != 0 && f.Mark&netcfg.ReplyMarkMask != v.mark) {
		return false
	}
	// The PBX began it (its packets are the original direction), or the far end did and
	// the PBX answers (after DNAT, its packets are the reply direction).
	return v.side(f.Forward, f.Forward.DstPort) || v.side(f.Reverse, f.Reverse.DstPort)
}

// side says whether t is the PBX sending from a voice port, or to a SIP port.
func (v voiceFlows) side(t netlink.IPTuple, to uint16) bool {
	a, _ := netip.AddrFromSlice(t.SrcIP)
	if !slices.Contains(v.pbx, a.Unmap()) {
		return false
	}
	p := t.SrcPort
	return slices.Contains(v.sip, p) || slices.Contains(v.sip, to) || (!v.rtp.IsZero() && p >= v.rtp.Lo && p <= v.rtp.Hi)
}

// flushVoice deletes the IPv4 voice flows' conntrack entries: their next packet makes a new
// entry, masqueraded to the address of the line the voice rule now picks.
func flushVoice(v voiceFlows) (uint, error) {
	if len(v.pbx) == 0 {
		return 0, nil
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, v)
	if err != nil {
		return n, fmt.Errorf("voicemove: delete the voice flows' conntrack entries: %w", err)
	}
	return n, nil
}
