package setup

import (
	"fmt"

	"github.com/officeedge/appliance/netcfg"
)

// Firewall is the setup state's ruleset, in the appliance's own table (inet appliance): the
// box answers on the setup LAN only (its page, gokrazy's page on 8080, DHCP, ICMP), forwards
// nothing, and may send anything (a DHCP client, a DISCOVER). The daemon's firewall owner
// replaces it in one batch when the daemon starts, as it replaces its own ruleset.
func Firewall(lan string) *netcfg.Table {
	fromLAN := func(m ...netcfg.Match) []netcfg.Match { return append([]netcfg.Match{netcfg.Iif(lan)}, m...) }
	return &netcfg.Table{Name: netcfg.TableName, Chains: []*netcfg.Chain{
		{Name: "input", Type: "filter", Hook: "input", Priority: 0, Policy: "drop", Rules: []netcfg.Rule{
			{Match: []netcfg.Match{netcfg.Iif("lo")}, Verdict: netcfg.Accept, Comment: "the box itself"},
			{Match: []netcfg.Match{netcfg.CtState("established", "related")}, Verdict: netcfg.Accept, Comment: "replies"},
			{Match: fromLAN(netcfg.DPort("tcp", 80, 80)), Verdict: netcfg.Accept, Comment: "setup page (redirect) from the LAN"},
			{Match: fromLAN(netcfg.DPort("tcp", 443, 443)), Verdict: netcfg.Accept, Comment: "setup page from the LAN"},
			{Match: fromLAN(netcfg.DPort("tcp", 8080, 8080)), Verdict: netcfg.Accept, Comment: "gokrazy's page from the LAN"},
			{Match: fromLAN(netcfg.DPort("udp", 67, 68)), Verdict: netcfg.Accept, Comment: "DHCP on the LAN"},
			{Match: fromLAN(netcfg.Proto("icmp")), Verdict: netcfg.Accept, Comment: "ICMP from the LAN"},
			{Match: fromLAN(netcfg.Proto("icmpv6")), Verdict: netcfg.Accept, Comment: "ICMPv6 from the LAN"},
		}},
		{Name: "forward", Type: "filter", Hook: "forward", Priority: 0, Policy: "drop"},
		{Name: "output", Type: "filter", Hook: "output", Priority: 0, Policy: "accept"},
	}}
}

// applyFirewall loads the setup state's ruleset in one batch, replacing whatever the table
// held (a daemon's ruleset, when its first config was put back). netns is a namespace's file
// descriptor, 0 for the process's own.
func applyFirewall(netns int, lan string) error {
	fw := netcfg.New(netns)
	defer fw.Close()
	if err := fw.Apply(Firewall(lan)); err != nil {
		return fmt.Errorf("setup: firewall: %w", err)
	}
	return nil
}
