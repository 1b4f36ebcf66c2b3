package dnsfwd

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// localTTL is short: DHCP hosts come and go.
const localTTL = 60

// special are ranges no public name should answer with, and whose reverse names no ISP
// knows (RFC 6303): loopback, RFC 1918, shared (CGNAT), link-local, ULA, unspecified.
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// private says whether a belongs to the office or to no one: the special ranges and the
// LAN's own subnets (its IPv6 prefix is global, but still the office's).
func (f *Forwarder) private(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range special {
		if p.Contains(a) {
			return true
		}
	}
	for _, p := range f.o.LAN {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// under says whether name (lower case, fully qualified) is domain or below it.
func under(name, domain string) bool {
	d := dns.Fqdn(domain)
	return name == d || strings.HasSuffix(name, "."+d)
}

// localLabel is the host label of a name the box answers itself: one in the local domain,
// or a bare single label asked for an address (no public host name is dotless; a TLD's
// other records, which validating resolvers ask for, still go out). ok is false for other
// names.
func (f *Forwarder) localLabel(name string, qtype uint16) (label string, ok bool) {
	if under(name, f.o.Domain) {
		return strings.TrimSuffix(strings.TrimSuffix(name, dns.Fqdn(f.o.Domain)), "."), true
	}
	if dns.CountLabel(name) == 1 && (qtype == dns.TypeA || qtype == dns.TypeAAAA || qtype == dns.TypeANY) {
		return strings.TrimSuffix(name, "."), true
	}
	return "", false
}

// addrs are the local name's addresses: the box and the PBX from the config first, then
// the DHCP server's hosts.
func (f *Forwarder) addrs(label string) []netip.Addr {
	if label == "" {
		return nil
	}
	if a, ok := f.o.Static[label]; ok {
		return a
	}
	if f.o.Hosts != nil {
		for n, a := range f.o.Hosts() {
			if strings.EqualFold(n, label) && a.IsValid() {
				return []netip.Addr{a}
			}
		}
	}
	return nil
}

// nameOf is the local name of a, for PTR queries.
func (f *Forwarder) nameOf(a netip.Addr) (string, bool) {
	for n, as := range f.o.Static {
		for _, x := range as {
			if x == a {
				return n, true
			}
		}
	}
	if f.o.Hosts != nil {
		for n, x := range f.o.Hosts() {
			if x == a {
				return strings.ToLower(n), true
			}
		}
	}
	return "", false
}

// answerLocal answers q for a local label: authoritative, NXDOMAIN for unknown hosts.
func (f *Forwarder) answerLocal(r *dns.Msg, label string) *dns.Msg {
	m := new(dns.Msg).SetReply(r)
	m.Authoritative, m.RecursionAvailable = true, true
	q := r.Question[0]
	as := f.addrs(label)
	if len(as) == 0 && label != "" {
		m.Rcode = dns.RcodeNameError
	}
	for _, a := range as {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: localTTL}
		switch {
		case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, f.soa())
	}
	return m
}

// answerPTR answers a reverse query for a local or private address; ok is false for a
// public address (the ISP knows its reverse names).
func (f *Forwarder) answerPTR(r *dns.Msg, a netip.Addr) (*dns.Msg, bool) {
	n, local := f.nameOf(a)
	if !local && !f.private(a) {
		return nil, false
	}
	m := new(dns.Msg).SetReply(r)
	m.Authoritative, m.RecursionAvailable = true, true
	q := r.Question[0]
	switch {
	case !local:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, f.soa())
	case q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY:
		m.Answer = append(m.Answer, &dns.PTR{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: localTTL},
			Ptr: dns.Fqdn(n + "." + f.o.Domain)})
	default:
		m.Ns = append(m.Ns, f.soa())
	}
	return m, true
}

func (f *Forwarder) soa() dns.RR {
	d := dns.Fqdn(f.o.Domain)
	return &dns.SOA{Hdr: dns.RR_Header{Name: d, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: localTTL},
		Ns: dns.Fqdn(f.o.BoxName + "." + f.o.Domain), Mbox: "hostmaster." + d, Serial: 1, Refresh: 3600, Retry: 600,
		Expire: 86400, Minttl: localTTL}
}

// reverseAddr parses an in-addr.arpa or ip6.arpa name of a whole address.
func reverseAddr(name string) (netip.Addr, bool) {
	name = strings.TrimSuffix(name, ".")
	if s, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		l := strings.Split(s, ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(l[3] + "." + l[2] + "." + l[1] + "." + l[0])
		return a, err == nil
	}
	if s, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		l := strings.Split(s, ".")
		if len(l) != 32 {
			return netip.Addr{}, false
		}
		var b strings.Builder
		for i := 31; i >= 0; i-- {
			if len(l[i]) != 1 {
				return netip.Addr{}, false
			}
			b.WriteString(l[i])
			if i%4 == 0 && i > 0 {
				b.WriteByte(':')
			}
		}
		a, err := netip.ParseAddr(b.String())
		return a, err == nil && a.Is6()
	}
	return netip.Addr{}, false
}

// rebinding says whether a forwarded answer for a public name carries an address of the
// office or a private one: a web page's script could then reach the LAN under that name.
func (f *Forwarder) rebinding(name string, m *dns.Msg) bool {
	for _, d := range f.o.RebindAllow {
		if under(name, strings.ToLower(d)) {
			return false
		}
	}
	for _, rr := range m.Answer {
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(rr.A)
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA)
		default:
			continue
		}
		if f.private(a) {
			return true
		}
	}
	return false
}
