package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// WAN is [wan]: uplink health checks and failover (package wan).
type WAN struct {
	// Targets are probed through each uplink: "icmp:HOST", "tcp:HOST:PORT" (a connect, or
	// a refusal, proves the path) or "dns:HOST:PORT" (a query). At least two, on different
	// networks, of more than one kind, so that one dead or rate-limiting target never takes a
	// line down.
	Targets []string `toml:"targets"`
	// Interval between probes to each target on the active uplink (and on the standby while
	// the active one looks unhealthy).
	Interval time.Duration `toml:"interval"`
	// FastInterval between probes to each live target on the primary (a fixed line without a
	// data cap) while it carries the traffic: the evidence for a sub-second silent-line verdict.
	FastInterval time.Duration `toml:"fast_interval"`
	// Silence: when no probed target has answered for this long on a fast-probed line (each
	// live target with two or more probes unanswered), a loss-aware confirmation burst decides
	// whether the line is down. A burst that gets one answer keeps the line.
	Silence time.Duration `toml:"silence"`
	// Timeout is how long a probe waits for its answer before it counts as lost.
	Timeout time.Duration `toml:"timeout"`
	// DownAfter consecutive lost probes on EVERY target declare an uplink down.
	DownAfter int `toml:"down_after"`
	// UpAfter consecutive answered probes bring a down uplink back up.
	UpAfter int `toml:"up_after"`
	// LossDegraded (percent of the last 20 probes of a target) marks an uplink degraded.
	LossDegraded int `toml:"loss_degraded"`
	// RTTDegraded is the round-trip time above which a target is slow (median of recent).
	RTTDegraded time.Duration `toml:"rtt_degraded"`
	// StandbyInterval between probes to each target on the standby uplink (data caps).
	StandbyInterval time.Duration `toml:"standby_interval"`
	// Stability is how long the primary must be clean before traffic fails back to it; it
	// doubles after each flap, up to HoldDownMax.
	Stability   time.Duration `toml:"stability"`
	HoldDownMax time.Duration `toml:"hold_down_max"`
	// SIPInterval between SIP OPTIONS to each trunk with an options address; SIPDownAfter
	// unanswered ones in a row raise "trunk down".
	SIPInterval  time.Duration `toml:"sip_interval"`
	SIPDownAfter int           `toml:"sip_down_after"`
}

// WANTarget is one parsed probe target.
type WANTarget struct {
	Kind string // icmp, tcp, dns
	Addr netip.AddrPort
}

func (t WANTarget) String() string {
	if t.Kind == "icmp" {
		return "icmp:" + t.Addr.Addr().String()
	}
	return t.Kind + ":" + t.Addr.String()
}

// ParseWANTarget reads "icmp:1.1.1.1", "tcp:192.0.2.53:443" or "dns:9.9.9.9:53" (the port
// defaults to 53 for dns and 443 for tcp).
func ParseWANTarget(s string) (WANTarget, string) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return WANTarget{}, "write kind:address, like icmp:1.1.1.1, tcp:1.1.1.1:443 or dns:9.9.9.9:53"
	}
	switch kind {
	case "icmp":
		a, err := netip.ParseAddr(rest)
		if err != nil || !a.Is4() {
			return WANTarget{}, "icmp targets are IPv4 addresses, like icmp:1.1.1.1"
		}
		return WANTarget{Kind: kind, Addr: netip.AddrPortFrom(a, 0)}, ""
	case "tcp", "dns":
		host, port := rest, map[string]string{"tcp": "443", "dns": "53"}[kind]
		if h, p, err := net.SplitHostPort(rest); err == nil {
			host, port = h, p
		}
		a, err := netip.ParseAddr(host)
		n, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || !a.Is4() || perr != nil || n == 0 {
			return WANTarget{}, kind + " targets are IPv4 address:port, like " + kind + ":192.0.2.53:" + map[string]string{"tcp": "443", "dns": "53"}[kind]
		}
		return WANTarget{Kind: kind, Addr: netip.AddrPortFrom(a, uint16(n))}, ""
	}
	return WANTarget{}, "kind " + strconv.Quote(kind) + " is not one of icmp, tcp, dns"
}

// ProbeTargets returns the parsed targets (valid after Parse).
func (s *WAN) ProbeTargets() []WANTarget {
	var out []WANTarget
	for _, t := range s.Targets {
		if pt, msg := ParseWANTarget(t); msg == "" {
			out = append(out, pt)
		}
	}
	return out
}

func (s *WAN) setDefaults(md *toml.MetaData) {
	if !md.IsDefined("wan", "targets") {
		// Anycast resolvers of two operators: two networks, two kinds.
		s.Targets = []string{"icmp:1.1.1.1", "dns:9.9.9.9:53", "icmp:8.8.8.8"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	// 500 ms probes, a 1 s timeout and 3 lost in a row on every target: the slow path (any line
	// probed at this rate is down 2-2.5 s after its last answer), and a single lost probe
	// never counts.
	def(&s.Interval, 500*time.Millisecond)
	def(&s.Timeout, time.Second)
	// 100 ms per live target on the active fixed line and 400 ms of silence, then a burst of
	// 3-12 probes answered within max(300 ms, 4 round trips): a silent line is down in about
	// 0.8 s, while a working line with 5 % loss each way loses a whole burst about once in 10^6
	// silences (and a silence itself comes about once per half hour).
	def(&s.FastInterval, min(100*time.Millisecond, s.Interval))
	def(&s.Silence, 400*time.Millisecond)
	def(&s.RTTDegraded, 400*time.Millisecond)
	// 3 targets every 40 s on standby: about 21 MB a month (see wan.MonthlyBytes).
	def(&s.StandbyInterval, 40*time.Second)
	def(&s.Stability, 60*time.Second)
	def(&s.HoldDownMax, 15*time.Minute)
	def(&s.SIPInterval, 5*time.Second)
	if s.DownAfter == 0 {
		s.DownAfter = 3
	}
	if s.UpAfter == 0 {
		s.UpAfter = 3
	}
	if !md.IsDefined("wan", "loss_degraded") {
		s.LossDegraded = 20
	}
	if s.SIPDownAfter == 0 {
		s.SIPDownAfter = 3
	}
}

func (s *WAN) check(c *Config, v *validator) {
	f := func(n string) string { return key("wan", n) }
	kinds, nets := map[string]bool{}, map[netip.Prefix]bool{}
	for _, t := range s.Targets {
		pt, msg := ParseWANTarget(t)
		if msg != "" {
			v.errf(f("targets"), "%q: %s", t, msg)
			continue
		}
		kinds[pt.Kind] = true
		p, _ := pt.Addr.Addr().Prefix(16)
		nets[p] = true
	}
	if len(s.Targets) < 2 {
		v.errf(f("targets"), "give at least two probe targets, so one dead target never takes a line down")
	} else if len(kinds) < 2 || len(nets) < 2 {
		c.Warnings = append(c.Warnings, "wan.targets: use targets of more than one kind (icmp, tcp, dns) on different networks, or ICMP rate-limiting at one operator can look like a dead line")
	}
	if s.Interval < 50*time.Millisecond {
		v.errf(f("interval"), "must be at least 50ms (it is %s)", s.Interval)
	}
	if s.FastInterval < 20*time.Millisecond || s.FastInterval > s.Interval {
		v.errf(f("fast_interval"), "must be from 20ms to interval (%s) (it is %s)", s.Interval, s.FastInterval)
	}
	if s.Silence < 2*s.FastInterval {
		v.errf(f("silence"), "must be at least twice fast_interval (%s), so every target has gone unanswered twice (it is %s)", 2*s.FastInterval, s.Silence)
	}
	if s.Timeout < 10*time.Millisecond {
		v.errf(f("timeout"), "must be at least 10ms (it is %s)", s.Timeout)
	}
	if s.DownAfter < 2 {
		v.errf(f("down_after"), "must be at least 2: a single lost probe must never take a line down")
	}
	if s.UpAfter < 1 {
		v.errf(f("up_after"), "must be at least 1")
	}
	if s.LossDegraded < 1 || s.LossDegraded > 100 {
		v.errf(f("loss_degraded"), "a percentage from 1 to 100 (it is %d)", s.LossDegraded)
	}
	if s.StandbyInterval < s.Interval {
		v.errf(f("standby_interval"), "must be at least interval (%s)", s.Interval)
	}
	if s.Stability < time.Second {
		v.errf(f("stability"), "must be at least 1s (it is %s)", s.Stability)
	}
	if s.HoldDownMax < s.Stability {
		v.errf(f("hold_down_max"), "must be at least stability (%s)", s.Stability)
	}
	if s.SIPInterval < 100*time.Millisecond {
		v.errf(f("sip_interval"), "must be at least 100ms (it is %s)", s.SIPInterval)
	}
	if s.SIPDownAfter < 1 {
		v.errf(f("sip_down_after"), "must be at least 1")
	}
	checkBudgets(c, v)
	for _, n := range SortedNames(c.SIPPeers) {
		p := c.SIPPeers[n]
		if p.Options == "" {
			continue
		}
		// The check leaves over IPv4 (udp4) only: an IPv6 or port-0 target would never answer
		// and report the trunk down forever.
		if ap, ok := p.OptionsAddr(); !ok || !ap.Addr().Is4() || ap.Port() == 0 {
			v.errf(key("sip_peers", n, "options"), "%q is not an IPv4 address[:port] to send SIP OPTIONS to (like \"192.0.2.10:5060\")", p.Options)
		}
	}
}

// OptionsAddr is where a peer's SIP OPTIONS health checks go (port 5060 if not given).
func (p *SIPPeer) OptionsAddr() (netip.AddrPort, bool) {
	if p.Options == "" {
		return netip.AddrPort{}, false
	}
	if ap, err := netip.ParseAddrPort(p.Options); err == nil {
		return ap, true
	}
	if a, err := netip.ParseAddr(p.Options); err == nil {
		return netip.AddrPortFrom(a, 5060), true
	}
	return netip.AddrPort{}, false
}
