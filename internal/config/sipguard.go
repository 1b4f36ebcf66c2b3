package config

import (
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// SIPGuard is [sipguard]: SIP attack detection and blocking (package sipguard).
type SIPGuard struct {
	// Enabled switches the detectors on (default true).
	Enabled bool `toml:"enabled"`
	// Interfaces to capture SIP on (default: the LAN interface, which every SIP packet to or
	// from the PBX crosses after the kernel blocklist).
	Interfaces []string `toml:"interfaces"`
	// ScannerAgents are User-Agent substrings (any case) of known scanners: blocked at the
	// first packet. Default: the built-in list; ExtraScannerAgents adds to it.
	ScannerAgents      []string `toml:"scanner_agents"`
	ExtraScannerAgents []string `toml:"extra_scanner_agents"`
	// AuthFailures requests with credentials answered 401/403 within AuthWindow block.
	AuthFailures int           `toml:"auth_failures"`
	AuthWindow   time.Duration `toml:"auth_window"`
	// UnansweredChallenges: this many more challenges than credentialed requests in
	// AuthWindow (a client that never authenticates) block.
	UnansweredChallenges int `toml:"unanswered_challenges"`
	// EnumUsers distinct users answered 404 (or 403 without credentials) within EnumWindow
	// block (at most 16).
	EnumUsers  int           `toml:"enum_users"`
	EnumWindow time.Duration `toml:"enum_window"`
	// SlowFailures credentialed failures from one source within SlowWindow block it (slow
	// guessing: one password a minute for hours).
	SlowFailures int           `toml:"slow_failures"`
	SlowWindow   time.Duration `toml:"slow_window"`
	// ExtFailures failures on one extension within ExtWindow, from ExtSources or more
	// sources, mark a distributed attack on it: every source failing on it is blocked.
	ExtFailures int           `toml:"ext_failures"`
	ExtSources  int           `toml:"ext_sources"`
	ExtWindow   time.Duration `toml:"ext_window"`
	// Failures within auth_window are also summed per IPv4 network of Net4Bits bits
	// (NetFailures4: each offender there is blocked) and per IPv6 /64 (NetFailures6: the
	// /64 is blocked).
	Net4Bits     int `toml:"net4_bits"`
	NetFailures4 int `toml:"net_failures4"`
	NetFailures6 int `toml:"net_failures6"`
	// A source that registered with a password within SiteWindow has real phones behind it
	// (an office's NAT): a user failing there raises an alert naming the extension and is
	// throttled, and the source is blocked only past SiteCeiling failures in auth_window.
	SiteWindow  time.Duration `toml:"site_window"`
	SiteCeiling int           `toml:"site_ceiling"`
	// TLSRate new SIP-TLS connections per minute from one source block it (0: off).
	TLSRate int `toml:"tls_rate"`
	// Hold: a source one failure from a verdict is held in the kernel this long once its
	// deciding request is on its way, so nothing of it passes while the block is written.
	Hold time.Duration `toml:"hold"`
	// FloodRate requests per second from one source block it.
	FloodRate int `toml:"flood_rate"`
	// KernelRate packets per second per source to the SIP port, above which the kernel
	// drops the excess before user space sees it (0: off).
	KernelRate int `toml:"kernel_rate"`
	// CallsPerMinute and ConcurrentCalls cap the calls one internet source may set up.
	CallsPerMinute  int `toml:"calls_per_minute"`
	ConcurrentCalls int `toml:"concurrent_calls"`
	// DenyPrefixes are denied destinations as digits after the international prefix
	// ("881", "1876"). Default: DefaultDenyPrefixes.
	DenyPrefixes []string `toml:"deny_prefixes"`
	// HomeCountry ("44"): when set, international numbers outside this country code are denied.
	HomeCountry string `toml:"home_country"`
	// BlockTimes are the block durations for the first, second, third... offense of a
	// source that proved it receives what is sent to its address (it answered the PBX's
	// challenge, or completed a TCP handshake): only those blocks are shared with the fleet.
	BlockTimes []time.Duration `toml:"block_times"`
	// UnprovenBlockTime caps the block of a source that never proved it (one forged UDP
	// packet can carry any source address): such a block stays on the box, is never
	// escalated and never shared. Default 10m.
	UnprovenBlockTime time.Duration `toml:"unproven_block_time"`
	// EvidenceAfter: a blocked source's packets keep being recorded this long for its pcap.
	EvidenceAfter time.Duration `toml:"evidence_after"`
	// AbuseLookup asks the registry's RDAP service for the abuse contact of each offender.
	AbuseLookup bool `toml:"abuse_lookup"`
	// Feeds are community blocklists.
	Feeds []SIPFeed `toml:"feed"`
}

// SIPFeed is one [[sipguard.feed]].
type SIPFeed struct {
	Name     string        `toml:"name"`
	URL      string        `toml:"url"`
	File     string        `toml:"file"`
	Format   string        `toml:"format"` // apiban or text
	Interval time.Duration `toml:"interval"`
}

func (s *SIPGuard) setDefaults(md *toml.MetaData) {
	if !md.IsDefined("sipguard", "enabled") {
		s.Enabled = true
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defi := func(field string, p *int, v int) {
		if !md.IsDefined("sipguard", field) {
			*p = v
		}
	}
	defi("auth_failures", &s.AuthFailures, 5)
	def(&s.AuthWindow, time.Minute)
	defi("unanswered_challenges", &s.UnansweredChallenges, 30)
	defi("enum_users", &s.EnumUsers, 10)
	def(&s.EnumWindow, time.Minute)
	defi("flood_rate", &s.FloodRate, 50)
	defi("slow_failures", &s.SlowFailures, 20)
	def(&s.SlowWindow, time.Hour)
	defi("ext_failures", &s.ExtFailures, 10)
	defi("ext_sources", &s.ExtSources, 3)
	def(&s.ExtWindow, 10*time.Minute)
	defi("net4_bits", &s.Net4Bits, 24)
	defi("net_failures4", &s.NetFailures4, 15)
	defi("net_failures6", &s.NetFailures6, 5)
	def(&s.SiteWindow, 2*time.Hour)
	defi("site_ceiling", &s.SiteCeiling, 20)
	defi("tls_rate", &s.TLSRate, 60)
	if !md.IsDefined("sipguard", "hold") {
		s.Hold = 3 * time.Second
	}
	defi("kernel_rate", &s.KernelRate, 200)
	defi("calls_per_minute", &s.CallsPerMinute, 5)
	defi("concurrent_calls", &s.ConcurrentCalls, 4)
	if len(s.BlockTimes) == 0 {
		s.BlockTimes = []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}
	}
	def(&s.EvidenceAfter, 3*time.Second)
	def(&s.UnprovenBlockTime, 10*time.Minute)
	if !md.IsDefined("sipguard", "scanner_agents") {
		s.ScannerAgents = DefaultScannerAgents
	}
	if !md.IsDefined("sipguard", "deny_prefixes") {
		s.DenyPrefixes = append([]string(nil), DefaultDenyPrefixes...)
	}
	for i := range s.Feeds {
		if s.Feeds[i].Format == "" {
			s.Feeds[i].Format = "text"
		}
		def(&s.Feeds[i].Interval, time.Hour)
	}
}

// DefaultScannerAgents are known SIP scanners' User-Agents (Kamailio secfilter examples and
// community lists; SIPVicious always sends friendly-scanner).
var DefaultScannerAgents = []string{
	"friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sipscan", "vaxsipuseragent",
	"pplsip", "iwar", "sundayddr", "sipsak", "simplesip", "sip call", "ozeki", "voipsec",
	"conaito", "usaairport", "portsip voip sdk", "zxcvfdf11", "smap", "pbxscan", "siparator",
}

// DefaultDenyPrefixes are destinations denied by default (country codes and number ranges
// after the international prefix): the +881/+882/+883 international networks (satellite and
// shared-cost ranges favoured by fraud), and high-risk destinations of published fraud
// reports (CFCA, operators' "high risk destination" lists): Caribbean NANP areas that look
// domestic to a North American dial plan (+1 809/829/849 Dominican Republic, 876 Jamaica,
// 284 BVI, 473 Grenada, 268 Antigua, 649 Turks and Caicos, 664 Montserrat, 767 Dominica,
// 758 St Lucia, 784 St Vincent, 869 St Kitts, 441 Bermuda), Cuba (+53), Somalia (+252),
// Ascension (+247), St Helena (+290), Tokelau (+690), Niue (+683), Cook Islands (+682),
// Papua New Guinea (+675), Solomon Islands (+677), Vanuatu (+678), Nauru (+674),
// Sao Tome (+239), Guinea-Bissau (+245), Sierra Leone (+232), Latvia premium (+371 9).
var DefaultDenyPrefixes = []string{
	"881", "882", "883",
	"1809", "1829", "1849", "1876", "1284", "1473", "1268", "1649", "1664", "1767", "1758", "1784", "1869", "1441",
	"53", "252", "247", "290", "690", "683", "682", "675", "677", "678", "674", "239", "245", "232",
}

var digits = regexp.MustCompile(`^[0-9]{1,8}$`)

func (s *SIPGuard) check(c *Config, v *validator) {
	pos := func(field string, n int) {
		if n < 0 {
			v.errf(key("sipguard", field), "must be 0 (off) or more, not %d", n)
		}
	}
	for _, name := range s.Interfaces {
		if msg := ifaceNameErr(name); msg != "" {
			v.errf(key("sipguard", "interfaces"), "%s", msg)
		}
	}
	pos("auth_failures", s.AuthFailures)
	pos("unanswered_challenges", s.UnansweredChallenges)
	pos("flood_rate", s.FloodRate)
	pos("slow_failures", s.SlowFailures)
	pos("ext_failures", s.ExtFailures)
	pos("net_failures4", s.NetFailures4)
	pos("net_failures6", s.NetFailures6)
	pos("site_ceiling", s.SiteCeiling)
	pos("tls_rate", s.TLSRate)
	if s.ExtSources < 1 {
		v.errf(key("sipguard", "ext_sources"), "must be at least 1, not %d", s.ExtSources)
	}
	if s.Net4Bits < 8 || s.Net4Bits > 32 {
		v.errf(key("sipguard", "net4_bits"), "must be 8 to 32 (a /24 is 24), not %d", s.Net4Bits)
	}
	if s.SlowWindow < s.AuthWindow || s.ExtWindow < time.Second {
		v.errf(key("sipguard", "slow_window"), "slow_window must be at least auth_window, and ext_window at least 1s")
	}
	if s.Hold < 0 || s.Hold > time.Minute {
		v.errf(key("sipguard", "hold"), "must be 0 (off) to 1m, not %s", s.Hold)
	}
	pos("kernel_rate", s.KernelRate)
	pos("calls_per_minute", s.CallsPerMinute)
	pos("concurrent_calls", s.ConcurrentCalls)
	if s.EnumUsers < 0 || s.EnumUsers > 16 {
		v.errf(key("sipguard", "enum_users"), "must be 0 (off) to 16, not %d", s.EnumUsers)
	}
	if s.ConcurrentCalls > 7 {
		v.errf(key("sipguard", "concurrent_calls"), "at most 7 concurrent calls per internet source can be told apart (it is %d); use 0 to switch the cap off", s.ConcurrentCalls)
	}
	if s.AuthWindow < time.Second || s.EnumWindow < time.Second {
		v.errf(key("sipguard", "auth_window"), "auth_window and enum_window must be at least 1s")
	}
	for i, p := range s.DenyPrefixes {
		if q := strings.TrimPrefix(p, "+"); !digits.MatchString(q) {
			v.errf(key("sipguard", "deny_prefixes"), "entry %d (%q) is not a country code or number prefix (digits after +, like \"881\")", i+1, p)
		} else {
			s.DenyPrefixes[i] = q
		}
	}
	if h := strings.TrimPrefix(s.HomeCountry, "+"); s.HomeCountry != "" && !digits.MatchString(h) {
		v.errf(key("sipguard", "home_country"), "%q is not a country calling code (like \"44\")", s.HomeCountry)
	} else {
		s.HomeCountry = h
	}
	for i, d := range s.BlockTimes {
		if d < time.Second {
			v.errf(key("sipguard", "block_times"), "entry %d (%s) must be at least 1s", i+1, d)
		}
	}
	if s.UnprovenBlockTime < time.Second || s.UnprovenBlockTime > time.Hour {
		v.errf(key("sipguard", "unproven_block_time"), "must be from 1s to 1h (it is %s): a source that never proved its address may be forged, and blocking it longer blocks whoever it names", s.UnprovenBlockTime)
	}
	if s.EvidenceAfter > time.Minute {
		v.errf(key("sipguard", "evidence_after"), "at most 1m (it is %s)", s.EvidenceAfter)
	}
	names := map[string]bool{}
	for _, f := range s.Feeds {
		k := key("sipguard", "feed")
		switch {
		case !regexp.MustCompile(`^[a-z0-9_-]{1,32}$`).MatchString(f.Name):
			v.errf(k, "feed name %q must be 1-32 of a-z, 0-9, _ and -", f.Name)
		case names[f.Name]:
			v.errf(k, "feed %q is listed twice", f.Name)
		case (f.URL == "") == (f.File == ""):
			v.errf(k, "feed %q needs exactly one of url and file", f.Name)
		case f.Format != "apiban" && f.Format != "text":
			v.errf(k, "feed %q: format %q is not apiban or text", f.Name, f.Format)
		case f.Interval < time.Minute:
			v.errf(k, "feed %q: interval must be at least 1m", f.Name)
		}
		if f.URL != "" {
			if u, err := url.Parse(f.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.errf(k, "feed %q: url %q is not an http(s) URL", f.Name, f.URL)
			}
		}
		names[f.Name] = true
	}
}
