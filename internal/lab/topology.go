package lab

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Host names; each is one network namespace, named Lab.NS(host).
const (
	HostPBX      = "pbx"      // office PBX on the LAN
	HostPhone    = "phone"    // desk phone on the LAN
	HostSwitch   = "sw"       // LAN switch: bridge br0 joining pbx, phone and box
	HostBox      = "box"      // the appliance: lan0, wan0 (FTTC), lte0 (LTE)
	HostFTTC     = "fttc"     // FTTC ISP router
	HostLTE      = "lte"      // LTE ISP router
	HostNet      = "net"      // internet core router, bridge br0 to the internet hosts
	HostTrunk    = "trunk"    // SIP trunk provider
	HostRemote   = "remote"   // remote office
	HostAttacker = "attacker" // hostile internet host
	HostAdmin    = "admin"    // an admin's home IP
	HostRelay    = "relay"    // the office's voice relay, a small public host (issue 22)
)

// Hosts lists every host of a lab, in creation order.
var Hosts = []string{
	HostPBX, HostPhone, HostSwitch, HostBox, HostFTTC, HostLTE,
	HostNet, HostTrunk, HostRemote, HostAttacker, HostAdmin, HostRelay,
}

// Interface names of the box (the same in every lab, since names are per namespace).
// Every other end host (pbx, phone, trunk, remote, attacker, admin, relay) has a single
// interface named eth0.
const (
	BoxLANIf = "lan0" // to the LAN switch
	BoxWANIf = "wan0" // to the FTTC ISP
	BoxLTEIf = "lte0" // to the LTE ISP
)

// Addresses, as plain strings usable in `ip`, net.Dial and config files.
// Names ending in Net4/Net6 are prefixes in CIDR form; the others are bare
// addresses (their prefix length is that of the Net they sit in).
const (
	// Office LAN. The box is the gateway; pbx and phone route everything via it.
	LANNet4 = "192.168.50.0/24"
	LANNet6 = "2001:db8:50::/64"
	BoxLAN4 = "192.168.50.1"
	BoxLAN6 = "2001:db8:50::1"
	PBX4    = "192.168.50.10"
	PBX6    = "2001:db8:50::10"
	Phone4  = "192.168.50.20"
	Phone6  = "2001:db8:50::20"

	// FTTC access link: fttc cust0 <-> box wan0.
	FTTCNet4 = "198.51.100.0/30"
	FTTCNet6 = "2001:db8:f1::/64"
	FTTCGW4  = "198.51.100.1"
	FTTCGW6  = "2001:db8:f1::1"
	BoxWAN4  = "198.51.100.2"
	BoxWAN6  = "2001:db8:f1::2"

	// LTE access link: lte cust0 <-> box lte0.
	LTENet4 = "203.0.113.0/30"
	LTENet6 = "2001:db8:e1::/64"
	LTEGW4  = "203.0.113.1"
	LTEGW6  = "2001:db8:e1::1"
	BoxLTE4 = "203.0.113.2"
	BoxLTE6 = "2001:db8:e1::2"

	// Transit links: fttc up0 <-> net fttc0, lte up0 <-> net lte0.
	FTTCTransitNet4 = "10.255.1.0/30"
	FTTCTransitNet6 = "fd00:255:1::/64"
	FTTCUp4         = "10.255.1.1"
	FTTCUp6         = "fd00:255:1::1"
	NetFTTC4        = "10.255.1.2"
	NetFTTC6        = "fd00:255:1::2"
	LTETransitNet4  = "10.255.2.0/30"
	LTETransitNet6  = "fd00:255:2::/64"
	LTEUp4          = "10.255.2.1"
	LTEUp6          = "fd00:255:2::1"
	NetLTE4         = "10.255.2.2"
	NetLTE6         = "fd00:255:2::2"

	// Internet segment on net's br0; net is the hosts' gateway.
	InternetNet4 = "192.0.2.0/24"
	InternetNet6 = "2001:db8:1::/64"
	NetGW4       = "192.0.2.1"
	NetGW6       = "2001:db8:1::1"
	Trunk4       = "192.0.2.10"
	Trunk6       = "2001:db8:1::10"
	Remote4      = "192.0.2.20"
	Remote6      = "2001:db8:1::20"
	Admin4       = "192.0.2.30"
	Admin6       = "2001:db8:1::30"
	Attacker4    = "192.0.2.66"
	Attacker6    = "2001:db8:1::66"
	Relay4       = "192.0.2.40" // the relay's public address
	Relay6       = "2001:db8:1::40"

	// Health-check probe targets, host routes on net's lo.
	Probe4    = "192.0.2.53"
	Probe4Alt = "198.51.100.200"
	Probe6    = "2001:db8:2::53"
)

// Box default route metrics set by ConfigureBox: FTTC preferred, LTE backup.
const (
	MetricFTTC = 100
	MetricLTE  = 200
)

// link is a veth pair between two hosts.
type link struct{ hostA, ifA, hostB, ifB string }

var links = []link{
	{HostPBX, "eth0", HostSwitch, "pbx0"},
	{HostPhone, "eth0", HostSwitch, "phone0"},
	{HostBox, BoxLANIf, HostSwitch, "box0"},
	{HostBox, BoxWANIf, HostFTTC, "cust0"},
	{HostBox, BoxLTEIf, HostLTE, "cust0"},
	{HostFTTC, "up0", HostNet, "fttc0"},
	{HostLTE, "up0", HostNet, "lte0"},
	{HostTrunk, "eth0", HostNet, "trunk0"},
	{HostRemote, "eth0", HostNet, "remote0"},
	{HostAdmin, "eth0", HostNet, "admin0"},
	{HostAttacker, "eth0", HostNet, "attacker0"},
	{HostRelay, "eth0", HostNet, "relay0"},
}

// bridges maps a host to the ports of its br0.
var bridges = map[string][]string{
	HostSwitch: {"pbx0", "phone0", "box0"},
	HostNet:    {"trunk0", "remote0", "admin0", "attacker0", "relay0"},
}

// routers forward v4 and v6.
var routers = []string{HostFTTC, HostLTE, HostNet}

// step is one `ip -n NS ...` command in host.
type step struct {
	host string
	args string
}

// addrSteps assigns addresses; nodad because DAD only delays a lab where no
// address is duplicated.
var addrSteps = []step{
	{HostPBX, "addr replace " + PBX4 + "/24 dev eth0"},
	{HostPBX, "addr replace " + PBX6 + "/64 dev eth0 nodad"},
	{HostPhone, "addr replace " + Phone4 + "/24 dev eth0"},
	{HostPhone, "addr replace " + Phone6 + "/64 dev eth0 nodad"},

	{HostFTTC, "addr replace " + FTTCGW4 + "/30 dev cust0"},
	{HostFTTC, "addr replace " + FTTCGW6 + "/64 dev cust0 nodad"},
	{HostFTTC, "addr replace " + FTTCUp4 + "/30 dev up0"},
	{HostFTTC, "addr replace " + FTTCUp6 + "/64 dev up0 nodad"},

	{HostLTE, "addr replace " + LTEGW4 + "/30 dev cust0"},
	{HostLTE, "addr replace " + LTEGW6 + "/64 dev cust0 nodad"},
	{HostLTE, "addr replace " + LTEUp4 + "/30 dev up0"},
	{HostLTE, "addr replace " + LTEUp6 + "/64 dev up0 nodad"},

	{HostNet, "addr replace " + NetFTTC4 + "/30 dev fttc0"},
	{HostNet, "addr replace " + NetFTTC6 + "/64 dev fttc0 nodad"},
	{HostNet, "addr replace " + NetLTE4 + "/30 dev lte0"},
	{HostNet, "addr replace " + NetLTE6 + "/64 dev lte0 nodad"},
	{HostNet, "addr replace " + NetGW4 + "/24 dev br0"},
	{HostNet, "addr replace " + NetGW6 + "/64 dev br0 nodad"},
	{HostNet, "addr replace " + Probe4 + "/32 dev lo"},
	{HostNet, "addr replace " + Probe4Alt + "/32 dev lo"},
	{HostNet, "addr replace " + Probe6 + "/128 dev lo nodad"},

	{HostTrunk, "addr replace " + Trunk4 + "/24 dev eth0"},
	{HostTrunk, "addr replace " + Trunk6 + "/64 dev eth0 nodad"},
	{HostRemote, "addr replace " + Remote4 + "/24 dev eth0"},
	{HostRemote, "addr replace " + Remote6 + "/64 dev eth0 nodad"},
	{HostAdmin, "addr replace " + Admin4 + "/24 dev eth0"},
	{HostAdmin, "addr replace " + Admin6 + "/64 dev eth0 nodad"},
	{HostAttacker, "addr replace " + Attacker4 + "/24 dev eth0"},
	{HostAttacker, "addr replace " + Attacker6 + "/64 dev eth0 nodad"},
	{HostRelay, "addr replace " + Relay4 + "/24 dev eth0"},
	{HostRelay, "addr replace " + Relay6 + "/64 dev eth0 nodad"},
}

// routeSteps run after all links are up. The ISPs deliberately have no route
// for the RFC 1918 LAN: as on the real internet, IPv4 from the office only
// comes back if the box NATs it, so a NAT leak shows up in tests. LAN v6 is
// global and routed to the box over FTTC (and over LTE from the LTE side).
var routeSteps = []step{
	{HostPBX, "route replace default via " + BoxLAN4},
	{HostPBX, "-6 route replace default via " + BoxLAN6},
	{HostPhone, "route replace default via " + BoxLAN4},
	{HostPhone, "-6 route replace default via " + BoxLAN6},

	{HostFTTC, "route replace default via " + NetFTTC4},
	{HostFTTC, "-6 route replace default via " + NetFTTC6},
	{HostFTTC, "-6 route replace " + LANNet6 + " via " + BoxWAN6},

	{HostLTE, "route replace default via " + NetLTE4},
	{HostLTE, "-6 route replace default via " + NetLTE6},
	{HostLTE, "-6 route replace " + LANNet6 + " via " + BoxLTE6},

	{HostNet, "route replace " + FTTCNet4 + " via " + FTTCUp4},
	{HostNet, "-6 route replace " + FTTCNet6 + " via " + FTTCUp6},
	{HostNet, "-6 route replace " + LANNet6 + " via " + FTTCUp6},
	{HostNet, "route replace " + LTENet4 + " via " + LTEUp4},
	{HostNet, "-6 route replace " + LTENet6 + " via " + LTEUp6},

	{HostTrunk, "route replace default via " + NetGW4},
	{HostTrunk, "-6 route replace default via " + NetGW6},
	{HostRemote, "route replace default via " + NetGW4},
	{HostRemote, "-6 route replace default via " + NetGW6},
	{HostAdmin, "route replace default via " + NetGW4},
	{HostAdmin, "-6 route replace default via " + NetGW6},
	{HostAttacker, "route replace default via " + NetGW4},
	{HostAttacker, "-6 route replace default via " + NetGW6},
	{HostRelay, "route replace default via " + NetGW4},
	{HostRelay, "-6 route replace default via " + NetGW6},
}

// boxSteps is what the appliance daemon would configure itself.
var boxSteps = []step{
	{HostBox, "addr replace " + BoxLAN4 + "/24 dev " + BoxLANIf},
	{HostBox, "addr replace " + BoxLAN6 + "/64 dev " + BoxLANIf + " nodad"},
	{HostBox, "addr replace " + BoxWAN4 + "/30 dev " + BoxWANIf},
	{HostBox, "addr replace " + BoxWAN6 + "/64 dev " + BoxWANIf + " nodad"},
	{HostBox, "addr replace " + BoxLTE4 + "/30 dev " + BoxLTEIf},
	{HostBox, "addr replace " + BoxLTE6 + "/64 dev " + BoxLTEIf + " nodad"},
	{HostBox, fmt.Sprintf("route replace default via %s dev %s metric %d", FTTCGW4, BoxWANIf, MetricFTTC)},
	{HostBox, fmt.Sprintf("route replace default via %s dev %s metric %d", LTEGW4, BoxLTEIf, MetricLTE)},
	{HostBox, fmt.Sprintf("-6 route replace default via %s dev %s metric %d", FTTCGW6, BoxWANIf, MetricFTTC)},
	{HostBox, fmt.Sprintf("-6 route replace default via %s dev %s metric %d", LTEGW6, BoxLTEIf, MetricLTE)},
}

// build creates the whole topology in namespaces that must not exist yet.
func (l *Lab) build() error {
	for _, h := range Hosts {
		if err := runCmd("ip", "netns", "add", l.NS(h)); err != nil {
			return err
		}
		l.created = append(l.created, l.NS(h))
		// Before any interface exists, so every new interface inherits
		// accept_dad=0 and its addresses are usable at once.
		if err := l.sysctl(h, map[string]string{
			"net/ipv6/conf/all/accept_dad":     "0",
			"net/ipv6/conf/default/accept_dad": "0",
		}); err != nil {
			return err
		}
		if err := l.ip(h, "link set lo up"); err != nil {
			return err
		}
	}
	for _, h := range routers {
		if err := l.sysctl(h, map[string]string{
			"net/ipv4/ip_forward":          "1",
			"net/ipv6/conf/all/forwarding": "1",
		}); err != nil {
			return err
		}
	}
	for _, k := range links {
		// Created directly inside the namespaces: the root namespace never sees them.
		if err := runCmd("ip", "link", "add", "name", k.ifA, "netns", l.NS(k.hostA),
			"type", "veth", "peer", "name", k.ifB, "netns", l.NS(k.hostB)); err != nil {
			return err
		}
	}
	for h, ports := range bridges {
		// No multicast snooping: it can eat IPv6 neighbour discovery on a
		// bridge that has seen no MLD querier.
		if err := l.ip(h, "link add name br0 type bridge mcast_snooping 0"); err != nil {
			return err
		}
		for _, p := range ports {
			if err := l.ip(h, "link set "+p+" master br0"); err != nil {
				return err
			}
		}
		if err := l.ip(h, "link set br0 up"); err != nil {
			return err
		}
	}
	for _, k := range links {
		if err := l.ip(k.hostA, "link set "+k.ifA+" up"); err != nil {
			return err
		}
		if err := l.ip(k.hostB, "link set "+k.ifB+" up"); err != nil {
			return err
		}
	}
	if err := l.runSteps(addrSteps); err != nil {
		return err
	}
	if err := l.runSteps(routeSteps); err != nil {
		return err
	}
	return l.waitNotTentative(Hosts...)
}

// ConfigureBox gives the box what the appliance daemon would: addresses on
// lan0, wan0 and lte0, default routes via FTTC (metric 100) and LTE (metric
// 200), and forwarding. It adds no firewall or NAT, so IPv4 from the LAN only
// reaches the internet once something masquerades it. Idempotent.
func (l *Lab) ConfigureBox() error {
	if err := l.sysctl(HostBox, map[string]string{
		"net/ipv4/ip_forward":          "1",
		"net/ipv6/conf/all/forwarding": "1",
	}); err != nil {
		return fmt.Errorf("lab: configure box: %w", err)
	}
	if err := l.runSteps(boxSteps); err != nil {
		return fmt.Errorf("lab: configure box: %w", err)
	}
	if err := l.waitNotTentative(HostBox); err != nil {
		return fmt.Errorf("lab: configure box: %w", err)
	}
	return nil
}

func (l *Lab) runSteps(steps []step) error {
	for _, s := range steps {
		if err := l.ip(s.host, s.args); err != nil {
			return err
		}
	}
	return nil
}

// ip runs `ip -n NS args...`, args split on spaces.
func (l *Lab) ip(host, args string) error {
	return runCmd("ip", append([]string{"-n", l.NS(host)}, strings.Fields(args)...)...)
}

// waitNotTentative waits until no IPv6 address in hosts is tentative. With
// accept_dad=0 and nodad this is normally immediate; it guards addresses
// added by anything else.
func (l *Lab) waitNotTentative(hosts ...string) error {
	deadline := time.Now().Add(5 * time.Second)
	for _, h := range hosts {
		for {
			out, err := output("ip", "-n", l.NS(h), "-6", "addr", "show", "tentative")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) == "" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: IPv6 addresses still tentative: %s", h, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// Blocklist makes a community list for scale tests: n addresses in 10.0.0.0/8 and m /28
// networks in 172.16.0.0/12, none of them in the lab. Nothing is ever sent to them; they
// only fill the kernel's sets.
func Blocklist(n, m int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n+m)
	for i := range n {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32))
	}
	for i := range m {
		x := i << 4
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(x>>16), byte(x >> 8), byte(x)}), 28))
	}
	return out
}
