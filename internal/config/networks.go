package config

import (
	"fmt"
	"math/big"
	"net/netip"
	"sort"
	"strings"
)

// hostBitsErr says how to write a network whose address has bits set past its prefix
// length, or "". Silently masking them would turn an admin's own address with a typo'd
// length (2001:db8::1/32) into a whole provider's network.
func hostBitsErr(p Prefix) string {
	if p.Masked() == p.Prefix {
		return ""
	}
	host := netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
	return fmt.Sprintf("%s has host bits set: did you mean %s or %s?", p, host, p.Masked())
}

// checkHostBits reports every network in ps, written at field, that has host bits set.
func checkHostBits(v *validator, field string, ps []Prefix) {
	for _, p := range ps {
		if msg := hostBitsErr(p); msg != "" {
			v.errf(field, "%s", msg)
		}
	}
}

// networkFields are the config's lists of networks (not the box's own interface
// addresses, which carry their subnet's prefix length on purpose).
func (c *Config) networkFields() map[string][]Prefix {
	out := map[string][]Prefix{
		"admin.networks":            c.Admin.Networks,
		key("blocklist", "protect"): c.Blocklist.Protect,
	}
	for n, p := range c.SIPPeers {
		out[key("sip_peers", n, "networks")] = p.Networks
	}
	for n, f := range c.Forward {
		out[key("forward", n, "from")] = f.From
	}
	return out
}

// coverage is how much of one address family a set of networks opens.
type coverage struct {
	family string         // "IPv4" or "IPv6"
	nets   []netip.Prefix // the union, without networks inside others, in address order
	count  *big.Int       // addresses in the union
	whole  bool           // the union is the whole address space
	over   bool           // the union is bigger than one network of the allowed width
	widest int            // that width, a prefix length
}

// measure counts the union of ps per address family; widest4 and widest6 are the widest
// networks (prefix lengths) whose worth of addresses is still allowed.
func measure(ps []Prefix, widest4, widest6 int) []coverage {
	var out []coverage
	for _, fam := range []struct {
		name   string
		is4    bool
		widest int
	}{{"IPv4", true, widest4}, {"IPv6", false, widest6}} {
		var nets []netip.Prefix
		for _, p := range ps {
			if p.IsValid() && p.Addr().Is4() == fam.is4 {
				nets = append(nets, p.Masked())
			}
		}
		if len(nets) == 0 {
			continue
		}
		out = append(out, union(fam.name, nets, fam.widest))
	}
	return out
}

// union measures networks of one family. CIDR networks either nest or are disjoint, so
// after sorting by address (the wider first at the same address) a network starting inside
// the last one kept lies wholly inside it; the others add their full size.
func union(family string, nets []netip.Prefix, widest int) coverage {
	sort.Slice(nets, func(i, j int) bool {
		if c := nets[i].Addr().Compare(nets[j].Addr()); c != 0 {
			return c < 0
		}
		return nets[i].Bits() < nets[j].Bits()
	})
	bitLen := nets[0].Addr().BitLen()
	cv := coverage{family: family, count: new(big.Int), widest: widest}
	for _, n := range nets {
		if len(cv.nets) > 0 && cv.nets[len(cv.nets)-1].Contains(n.Addr()) {
			continue
		}
		cv.nets = append(cv.nets, n)
		cv.count.Add(cv.count, pow2(bitLen-n.Bits()))
	}
	cv.whole = cv.count.Cmp(pow2(bitLen)) == 0
	cv.over = cv.count.Cmp(pow2(bitLen-widest)) > 0
	return cv
}

// pow2 is 2 to the n, the number of addresses in a network with n host bits.
func pow2(n int) *big.Int { return new(big.Int).Lsh(big.NewInt(1), uint(max(n, 0))) }

// hasWorld reports whether one of the networks is itself the whole internet (a /0),
// which has its own error.
func (cv coverage) hasWorld() bool { return len(cv.nets) == 1 && cv.nets[0].Bits() == 0 }

// subject names the union for a message, with its verb: "10.0.0.0/7 covers",
// "a, b together cover", or with group "the SIP peers' networks (a, b) together cover".
func (cv coverage) subject(group, one, many string) string {
	const show = 4
	var names []string
	for i, n := range cv.nets {
		if i == show {
			names = append(names, fmt.Sprintf("and %d more", len(cv.nets)-show))
			break
		}
		names = append(names, n.String())
	}
	list := strings.Join(names, ", ")
	switch {
	case group != "":
		return group + " (" + list + ") together " + many
	case len(cv.nets) == 1:
		return list + " " + one
	}
	return list + " together " + many
}

// size words the union's size: "33554432 IPv4 addresses, more than a /8".
func (cv coverage) size() string {
	return fmt.Sprintf("%s %s addresses, more than a /%d", cv.count, cv.family, cv.widest)
}

// checkAdminWidth refuses admin networks that together open management to the whole
// internet (always) or to more than admin.widest4/widest6 allow (unless admin.allow_wide).
func (c *Config) checkAdminWidth(v *validator) {
	a := c.Admin
	for _, cv := range measure(a.Networks, a.Widest4, a.Widest6) {
		switch {
		case cv.hasWorld():
			// reported network by network
		case cv.whole:
			v.errf("admin.networks", "%s open SSH and management to the whole internet; list the admins' own networks", cv.subject("", "would", "would"))
		case cv.over && !a.AllowWide:
			v.errf("admin.networks", "%s %s: SSH and management would be open to a large part of the internet; list the admins' own networks, or set admin.allow_wide = true if you really mean it", cv.subject("", "covers", "cover"), cv.size())
		}
	}
	if a.AllowWide {
		c.Warnings = append(c.Warnings, fmt.Sprintf("admin networks may be wider than a /%d or /%d (admin.allow_wide = true): SSH and the box's pages may be open to a large part of the internet", a.Widest4, a.Widest6))
	}
}

// checkSIPWidth refuses SIP peers' networks that together open SIP to the whole internet
// or to more than pbx.sip_widest4/sip_widest6 allow, unless pbx.allow_sip_from_anywhere.
// It is reported at the first peer (in name order) that takes the union over the limit.
func (c *Config) checkSIPWidth(v *validator) {
	p := c.PBX
	if p.AllowSIPFromAnywhere {
		return
	}
	names := SortedNames(c.SIPPeers)
	upTo := func(k int) []Prefix {
		var ps []Prefix
		for _, n := range names[:k] {
			ps = append(ps, c.SIPPeers[n].Networks...)
		}
		return ps
	}
	all := measure(upTo(len(names)), p.SIPWidest4, p.SIPWidest6)
	for i, cv := range all {
		if cv.hasWorld() || !(cv.whole || cv.over) {
			continue
		}
		// The union only grows with more peers: find the first one it is too wide at.
		k := sort.Search(len(names), func(k int) bool {
			for _, part := range measure(upTo(k+1), p.SIPWidest4, p.SIPWidest6) {
				if part.family == all[i].family {
					return part.whole || part.over
				}
			}
			return false
		})
		field := key("sip_peers", names[min(k, len(names)-1)], "networks")
		group := ""
		if len(names) > 1 {
			group = "the SIP peers' networks"
		}
		if cv.whole {
			v.errf(field, "%s SIP to the whole internet, the most common way PBXs get hacked; list your providers' networks, or set pbx.allow_sip_from_anywhere = true if you really mean it", cv.subject(group, "opens", "open"))
			continue
		}
		v.errf(field, "%s %s: SIP would be open to a large part of the internet, the most common way PBXs get hacked; list your providers' networks, or set pbx.allow_sip_from_anywhere = true if you really mean it", cv.subject(group, "covers", "cover"), cv.size())
	}
}

// checkWidths validates the width limits themselves.
func checkWidths(v *validator, field4, field6 string, w4, w6 int) {
	if w4 < 1 || w4 > 32 {
		v.errf(field4, "must be a prefix length from 1 to 32 (it is %d)", w4)
	}
	if w6 < 1 || w6 > 128 {
		v.errf(field6, "must be a prefix length from 1 to 128 (it is %d)", w6)
	}
}
