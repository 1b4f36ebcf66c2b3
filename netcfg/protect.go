package netcfg

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/officeedge/appliance/internal/config"
)

// Protections are what the box depends on and never blocks, from the config: the LAN, the
// box's own addresses, the uplinks' gateways and configured DNS resolvers, the wan probe
// targets, the SIP trunks' OPTIONS targets and networks, admin networks, the VPN phones'
// tunnel addresses, the SMTP server, the NTP servers, the CrowdSec LAPI, the backup
// destinations (and PBXes pulled from), the community feeds' servers, the DNS servers in
// resolvConf, and [blocklist] protect. Host
// names are resolved together within a short deadline; one that does not resolve protects
// nothing until the next SetConfig. What is learned at run time (a DHCP lease's gateway and
// resolvers) comes through Owner.SetProtected; trusted names (trunk SRV targets) through
// Owner.SetResolved, which joins them to their peer's networks.
func Protections(cfg *config.Config, resolvConf string) []Protection {
	var out []Protection
	add := func(p netip.Prefix, why string) {
		if p.IsValid() {
			out = append(out, Protection{Prefix: p.Masked(), Why: why})
		}
	}
	host := func(a netip.Addr, why string) {
		if a.IsValid() {
			a = a.Unmap()
			add(netip.PrefixFrom(a, a.BitLen()), why)
		}
	}
	for _, a := range cfg.LAN.Addresses {
		add(a.Masked(), "the office LAN")
	}
	for _, u := range cfg.Uplink.All() {
		host(u.Address.Addr(), "the box's own address on uplink "+u.Name)
		host(u.Address6.Addr(), "the box's own address on uplink "+u.Name)
		host(u.Gateway.Addr, "the gateway of uplink "+u.Name)
		host(u.Gateway6.Addr, "the gateway of uplink "+u.Name)
	}
	for _, t := range cfg.WAN.ProbeTargets() {
		host(t.Addr.Addr(), "a wan probe target ("+t.String()+"): blocking it would fake an outage")
	}
	for _, u := range cfg.Uplink.All() {
		rs := cfg.DNS.Resolvers.Primary
		if u.Role == "backup" {
			rs = cfg.DNS.Resolvers.Backup
		}
		for _, a := range rs {
			host(a.Addr, "a DNS resolver of uplink "+u.Name+" ([dns.resolvers] "+u.Role+")")
		}
	}
	names := make([]string, 0, len(cfg.SIPPeers))
	for n := range cfg.SIPPeers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		peer := cfg.SIPPeers[n]
		for _, p := range peer.Networks {
			add(p.Prefix, "trusted SIP peer "+n+" ("+peer.Kind+")")
		}
		if ap, err := netip.ParseAddrPort(peer.Options); err == nil {
			host(ap.Addr(), "the OPTIONS target of SIP peer "+n)
		}
	}
	for _, p := range cfg.Admin.Networks {
		add(p.Prefix, "an admin network")
	}
	if cfg.VPN.Enabled {
		for _, n := range cfg.VPN.PeerNames() {
			host(cfg.VPN.Peers[n].Address.Addr, "the tunnel address of VPN phone "+n)
		}
	}
	for _, p := range cfg.Blocklist.Protect {
		add(p.Prefix, "[blocklist] protect")
	}
	deps := dependencies(cfg)
	addrs := lookupAll(deps, lookupDeadline)
	for i, d := range deps {
		for _, a := range addrs[i] {
			host(a, d.why)
		}
	}
	for _, a := range Nameservers(resolvConf) {
		host(a, "a DNS server of the box ("+resolvConf+")")
	}
	return out
}

// Nameservers reads the nameserver lines of a resolv.conf (none when it is missing): the
// servers the box protects, and the ones its DNS falls back to.
func Nameservers(path string) []netip.Addr {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "nameserver" {
			if a, err := netip.ParseAddr(fs[1]); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// limits are the widest networks taken without force.
type limits struct{ widest4, widest6 int }

// refuse says why p may not be blocked: too wide (unless forced), or protected (never).
func refuse(p netip.Prefix, force bool, prot []Protection, l limits) error {
	widest := l.widest4
	if p.Addr().Is6() {
		widest = l.widest6
	}
	if !force && widest > 0 && p.Bits() < widest {
		return &TooWideError{Prefix: p, Widest: widest}
	}
	if pr, ok := protectedBy(p, prot); ok {
		return &ProtectedError{Prefix: p, By: pr}
	}
	return nil
}

// protectedBy finds the first protection p overlaps: a network wider than a protected host
// is refused as much as a host inside a protected network.
func protectedBy(p netip.Prefix, prot []Protection) (Protection, bool) {
	for _, pr := range prot {
		if pr.Prefix.Overlaps(p) {
			return pr, true
		}
	}
	return Protection{}, false
}

// checkPrefix refuses what is not an address or network.
func checkPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() || p.Addr().Zone() != "" {
		return p, fmt.Errorf("netcfg: %s is not an IP address or network", p)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
	}
	return p.Masked(), nil
}
