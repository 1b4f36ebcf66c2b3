package box

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
)

// The voice route (this part's, like wan's tables 101/102 are wan's): table Table holds a
// default route into the tunnel, and an ip rule sends packets marked netcfg.VoiceMark there
// ahead of wan's reply rules (1001, 1002). With all_traffic, the LAN's traffic goes there
// too, after the main table's more specific routes (the LAN, the VPN) and wan's reply
// rules. While the relay answers on no line they are removed: voice follows the main table
// (direct, as without a relay). Reconciled every reconcileEvery; removed when the part stops.
const (
	Table        = 110
	RulePriority = 90
	// all_traffic: the main table without its default routes, then the tunnel.
	allMainPriority  = 1009
	allRelayPriority = 1010
)

// rules are the ip rules the part owns when voice goes through the relay.
func rules(c *config.Config) []*netlink.Rule {
	mark := netcfg.VoiceMark
	voice := netlink.NewRule()
	voice.Family, voice.Priority, voice.Table, voice.Mark, voice.Mask = netlink.FAMILY_V4, RulePriority, Table, mark, &mark
	out := []*netlink.Rule{voice}
	if c.Relay.AllTraffic {
		main := netlink.NewRule()
		main.Family, main.Priority, main.Table, main.IifName, main.SuppressPrefixlen = netlink.FAMILY_V4, allMainPriority, unix.RT_TABLE_MAIN, c.LAN.Interface, 0
		all := netlink.NewRule()
		all.Family, all.Priority, all.Table, all.IifName = netlink.FAMILY_V4, allRelayPriority, Table, c.LAN.Interface
		out = append(out, main, all)
	}
	return out
}

// owned says whether r is one of the part's rules (any of them, so a switched-off
// all_traffic's are removed too).
func owned(r netlink.Rule) bool {
	switch r.Priority {
	case RulePriority, allRelayPriority:
		return r.Table == Table
	case allMainPriority:
		return r.Table == unix.RT_TABLE_MAIN && r.SuppressPrefixlen == 0
	}
	return false
}

func same(a netlink.Rule, b *netlink.Rule) bool {
	am, bm := uint32(0), uint32(0)
	if a.Mask != nil {
		am = *a.Mask
	}
	if b.Mask != nil {
		bm = *b.Mask
	}
	return a.Priority == b.Priority && a.Table == b.Table && a.Mark == b.Mark && am == bm && a.IifName == b.IifName &&
		a.SuppressPrefixlen == b.SuppressPrefixlen
}

// setRoutes makes the voice route and rules exist (on) or not (off), changing only what differs.
func (p *Part) setRoutes(on bool) error {
	c := p.config()
	var errs []error
	have, err := netlink.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("relay: list ip rules: %w", err)
	}
	var want []*netlink.Rule
	if on {
		// The route first: a rule into an empty table would send voice nowhere.
		if err := p.setTableRoute(c.Relay.Interface); err != nil {
			return err
		}
		want = rules(c)
	}
	for _, r := range have {
		if !owned(r) {
			continue
		}
		keep := false
		for _, w := range want {
			keep = keep || same(r, w)
		}
		if !keep {
			if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("relay: remove ip rule priority %d: %w", r.Priority, err))
			}
		}
	}
	for _, w := range want {
		found := false
		for _, r := range have {
			found = found || same(r, w)
		}
		if !found {
			if err := netlink.RuleAdd(w); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("relay: ip rule priority %d lookup %d: %w", w.Priority, w.Table, err))
			}
		}
	}
	if !on {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			errs = append(errs, err)
		}
		for _, r := range rs {
			if r.Table == Table {
				if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("relay: remove table %d's route: %w", Table, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// setTableRoute makes table Table's only route the default one into the tunnel.
func (p *Part) setTableRoute(iface string) error {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("%w: %v", errGone, err)
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: Table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("relay: list table %d: %w", Table, err)
	}
	right := false
	for _, r := range rs {
		if r.Table != Table {
			continue // the filter is not trusted with every kernel (as wan says)
		}
		if r.LinkIndex == l.Attrs().Index && (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw == nil {
			right = true
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("relay: remove a stray route of table %d: %w", Table, err)
		}
	}
	if right {
		return nil
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Table: Table, Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("relay: table %d default dev %s: %w", Table, iface, err)
	}
	return nil
}

// voiceFlows matches the conntrack entries of the PBX's SIP and RTP with hosts beyond the
// box: those the PBX opened and those DNATed to it. They are NATed to the tunnel's address
// or a line's, so a switch between the relay and direct deletes them and their next packet
// is NATed again to the path in force.
type voiceFlows struct {
	pbx   netip.Addr
	ports []config.PortRange
	local []netip.Prefix // the LAN and the VPN: the PBX's own phones are not trunk flows
	// stale, when set, keeps only the flows whose path address (the address the far end
	// sees: NATed to, or DNATed from) it calls stale: the re-sweeps after a switch leave
	// the flows already on the new path alone.
	stale func(path netip.Addr) bool
}

func newVoiceFlows(c *config.Config) voiceFlows {
	v := voiceFlows{pbx: c.PBX.Address.Addr, ports: []config.PortRange{c.PBX.SIPPort.Range(), c.PBX.RTPPorts}}
	if c.PBX.SIPTLSPort != 0 {
		v.ports = append(v.ports, c.PBX.SIPTLSPort.Range())
	}
	for _, s := range c.LAN.Subnets() {
		v.local = append(v.local, s.Prefix)
	}
	if c.VPN.Enabled {
		v.local = append(v.local, c.VPN.Address.Masked())
	}
	return v
}

func (v voiceFlows) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	if f.Forward.Protocol != unix.IPPROTO_UDP && f.Forward.Protocol != unix.IPPROTO_TCP {
		return false
	}
	src, _ := netip.AddrFromSlice(f.Forward.SrcIP)
	dst, _ := netip.AddrFromSlice(f.Forward.DstIP)
	rsrc, _ := netip.AddrFromSlice(f.Reverse.SrcIP)
	rdst, _ := netip.AddrFromSlice(f.Reverse.DstIP)
	var port uint16
	var other, path netip.Addr
	switch {
	case src.Unmap() == v.pbx: // the PBX opened it
		port, other, path = f.Forward.SrcPort, dst.Unmap(), rdst.Unmap()
	case rsrc.Unmap() == v.pbx && dst.Unmap() != v.pbx: // DNATed to the PBX
		port, other, path = f.Reverse.SrcPort, src.Unmap(), dst.Unmap()
	default:
		return false
	}
	if v.stale != nil && !v.stale(path) {
		return false
	}
	for _, l := range v.local {
		if l.Contains(other) {
			return false
		}
	}
	for _, r := range v.ports {
		if !r.IsZero() && port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

// flushVoice deletes the voice flows' conntrack entries.
func flushVoice(c *config.Config) (uint, error) { return deleteVoice(newVoiceFlows(c)) }

// flushStaleVoice deletes the voice flows still on the other path than the one in force:
// through the tunnel (NATed to the box's tunnel address) while voice goes direct, or direct
// while it goes through the relay.
func flushStaleVoice(c *config.Config, usingRelay bool) (uint, error) {
	v, tunnel := newVoiceFlows(c), c.Relay.BoxAddr()
	v.stale = func(path netip.Addr) bool { return (path == tunnel) != usingRelay }
	return deleteVoice(v)
}

func deleteVoice(v voiceFlows) (uint, error) {
	if !v.pbx.IsValid() {
		return 0, nil
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, v)
	if err != nil {
		return n, fmt.Errorf("relay: delete the voice flows' conntrack entries: %w", err)
	}
	return n, nil
}
