package config

import (
	"strings"

	"github.com/BurntSushi/toml"
)

// DNS is [dns]: the forwarder the office's hosts and the box itself ask.
type DNS struct {
	// Enabled answers DNS on the LAN addresses (port 53, UDP and TCP); never on the uplinks.
	Enabled bool `toml:"enabled"`
	// Domain is the office's local domain: the box, the PBX and DHCP hosts are answered
	// under it by the box itself, and never asked of the ISP.
	Domain string `toml:"domain"`
	// BoxName and PBXName are the box's and the PBX's names in Domain.
	BoxName string `toml:"box_name"`
	PBXName string `toml:"pbx_name"`
	// Resolvers are each uplink's ISP resolvers. Those an uplink learns by DHCP are asked
	// first; these are the fallback (and the only ones of a static uplink).
	Resolvers DNSResolvers `toml:"resolvers"`
	// CacheSize is how many answers are kept (the oldest used go first).
	CacheSize int `toml:"cache_size"`
	// RebindAllow lists public domains whose names may answer with LAN or private addresses
	// (a VPN's internal names); any other does not reach the office (DNS rebinding).
	RebindAllow []string `toml:"rebind_allow"`
	// RateLimit is how many queries a second one client address may ask on average, and
	// RateBurst how many at once; more are answered REFUSED (never dropped: a dropped
	// query is a 5 s wait for the client). One address may be a whole Wi-Fi network behind
	// a router in NAT mode or a terminal server: the defaults (1000 a second, bursts of
	// 5000) let 250 devices waking at once through, and keep one runaway device from
	// taking more than a few percent of what the box answers.
	RateLimit int `toml:"rate_limit"`
	RateBurst int `toml:"rate_burst"`
}

// DNSResolvers are the configured resolvers of the uplinks, by role.
type DNSResolvers struct {
	Primary []Addr `toml:"primary"`
	Backup  []Addr `toml:"backup"`
}

func (s *DNS) setDefaults(md *toml.MetaData) {
	if !md.IsDefined("dns", "enabled") {
		s.Enabled = true
	}
	if s.Domain == "" {
		s.Domain = "office.internal"
	}
	s.Domain = strings.TrimSuffix(strings.ToLower(s.Domain), ".")
	if s.BoxName == "" {
		s.BoxName = "gateway"
	}
	if s.PBXName == "" {
		s.PBXName = "pbx"
	}
	if s.CacheSize == 0 {
		s.CacheSize = 4096
	}
	if s.RateLimit == 0 {
		s.RateLimit = 1000
	}
	if s.RateBurst == 0 {
		s.RateBurst = 5 * s.RateLimit
	}
}

func (s *DNS) check(c *Config, v *validator) {
	if msg := domainErr(s.Domain); msg != "" {
		v.errf(key("dns", "domain"), "%s", msg)
	}
	for _, f := range []struct{ field, name string }{{"box_name", s.BoxName}, {"pbx_name", s.PBXName}} {
		if msg := domainErr(f.name); msg != "" || strings.Contains(f.name, ".") {
			v.errf(key("dns", f.field), "%q is not a host name (one label of letters, digits and hyphens)", f.name)
		}
	}
	if strings.EqualFold(s.BoxName, s.PBXName) {
		v.errf(key("dns", "pbx_name"), "%q is also the box's name (dns.box_name)", s.PBXName)
	}
	for role, list := range map[string][]Addr{"primary": s.Resolvers.Primary, "backup": s.Resolvers.Backup} {
		for _, a := range list {
			switch {
			case !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
				v.errf(key("dns", "resolvers", role), "%s is not a resolver's address", a)
			case c.isBoxLANAddr(a.Addr):
				v.errf(key("dns", "resolvers", role), "%s is the box itself: give the ISP's resolvers", a)
			}
		}
	}
	if s.CacheSize < 16 || s.CacheSize > 1_000_000 {
		v.errf(key("dns", "cache_size"), "must be between 16 and 1000000 answers (it is %d)", s.CacheSize)
	}
	if s.RateLimit < 1 || s.RateLimit > 100_000 {
		v.errf(key("dns", "rate_limit"), "must be between 1 and 100000 queries a second (it is %d)", s.RateLimit)
	}
	if s.RateBurst < s.RateLimit || s.RateBurst > 1_000_000 {
		v.errf(key("dns", "rate_burst"), "must be between rate_limit (%d) and 1000000 queries (it is %d)", s.RateLimit, s.RateBurst)
	}
	for _, d := range s.RebindAllow {
		if msg := domainErr(strings.TrimSuffix(d, ".")); msg != "" {
			v.errf(key("dns", "rebind_allow"), "%s", msg)
		}
	}
}

// domainErr says why d is not a DNS name made of letters, digits and hyphens, or "".
func domainErr(d string) string {
	if d == "" || len(d) > 253 {
		return "a domain name of 1 to 253 characters is needed"
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return shortQuote(d) + " is not a domain name (labels of 1 to 63 letters, digits or hyphens, not starting or ending with one)"
		}
		for i := 0; i < len(l); i++ {
			b := l[i] | 0x20
			if !(b >= 'a' && b <= 'z' || l[i] >= '0' && l[i] <= '9' || l[i] == '-') {
				return shortQuote(d) + " is not a domain name (only letters, digits, hyphens and dots)"
			}
		}
	}
	return ""
}
