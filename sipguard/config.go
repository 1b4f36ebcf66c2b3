package sipguard

import (
	"github.com/officeedge/appliance/internal/config"
)

// ThresholdsFrom turns [sipguard] into detector settings, filling in the built-in lists.
func ThresholdsFrom(c *config.Config) Thresholds {
	s := c.SIPGuard
	t := Thresholds{
		ScannerAgents: s.ScannerAgents,
		AuthFailures:  s.AuthFailures, AuthWindow: s.AuthWindow,
		Challenges: s.UnansweredChallenges,
		EnumUsers:  s.EnumUsers, EnumWindow: s.EnumWindow,
		FloodRate:   s.FloodRate,
		CallsPerMin: s.CallsPerMinute, Concurrent: s.ConcurrentCalls,
		DenyPrefixes: s.DenyPrefixes,
		HomeCountry:  s.HomeCountry,
		SlowFailures: s.SlowFailures, SlowWindow: s.SlowWindow,
		ExtFailures: s.ExtFailures, ExtSources: s.ExtSources, ExtWindow: s.ExtWindow,
		Net4Bits: s.Net4Bits, NetFailures4: s.NetFailures4, NetFailures6: s.NetFailures6,
		SiteWindow: s.SiteWindow, SiteCeiling: s.SiteCeiling,
		TLSRate: s.TLSRate, Hold: s.Hold,
	}
	t.ScannerAgents = append(append([]string(nil), t.ScannerAgents...), s.ExtraScannerAgents...)
	for _, p := range c.LAN.Subnets() {
		t.Local = append(t.Local, p.Prefix)
	}
	// VPN peers are authenticated by their WireGuard key: trusted like SIP peers.
	for _, p := range append(c.SIPNetworks(), c.VPN.PeerPrefixes()...) {
		t.Trusted = append(t.Trusted, p.Prefix)
	}
	return t
}

// OptionsFrom is what a config gives a Guard ([sipguard] and the site): the box's daemon and
// the relay (package relay) add their blocker, bus, log, state directory and alerts.
func OptionsFrom(c *config.Config) Options {
	o := Options{
		Thresholds:    ThresholdsFrom(c),
		ForgetFlows:   ForgetFlows(nil),
		BlockTimes:    c.SIPGuard.BlockTimes,
		EvidenceAfter: c.SIPGuard.EvidenceAfter,
		// Not on reload: a change applies at the guard's next start.
		UnprovenBlockTime: c.SIPGuard.UnprovenBlockTime,
		Site:              c.Site,
		TLSPort:           uint16(c.PBX.SIPTLSPort),
	}
	if c.SIPGuard.AbuseLookup {
		o.Abuse = &AbuseLookup{}
	}
	return o
}
