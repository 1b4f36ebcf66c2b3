package config

import (
	"strings"
	"testing"
	"time"
)

func TestSIPGuardDefaultsAndErrors(t *testing.T) {
	c, err := Parse("lab.toml", []byte(strings.Replace(string(Example()), "[sipguard]\n", "[sipguard]\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s := c.SIPGuard
	if !s.Enabled || s.AuthFailures != 5 || s.AuthWindow != time.Minute || len(s.DenyPrefixes) == 0 || len(s.ScannerAgents) == 0 ||
		len(s.BlockTimes) != 3 || s.BlockTimes[2] != 7*24*time.Hour || s.KernelRate != 200 {
		t.Errorf("defaults: %+v", s)
	}
	bad := strings.Replace(string(Example()), "[sipguard]\n", "[sipguard]\nenum_users = 40\ndeny_prefixes = [\"+881\", \"abc\"]\nhome_country = \"x\"\n"+
		"[[sipguard.feed]]\nname = \"apiban\"\nurl = \"ftp://x\"\nformat = \"apiban\"\n", 1)
	_, err = Parse("bad.toml", []byte(bad))
	if err == nil {
		t.Fatal("bad [sipguard] accepted")
	}
	for _, want := range []string{"enum_users", "\"abc\"", "home_country", "ftp://x"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	off := strings.Replace(string(Example()), "[sipguard]\n", "[sipguard]\ndeny_prefixes = []\n", 1)
	c, err = Parse("off.toml", []byte(off))
	if err != nil || len(c.SIPGuard.DenyPrefixes) != 0 {
		t.Errorf("an empty deny list must stay empty: %v %v", c.SIPGuard.DenyPrefixes, err)
	}
}

func TestSIPGuardEvasionSettings(t *testing.T) {
	c, err := Parse("lab.toml", Example())
	if err != nil {
		t.Fatal(err)
	}
	s := c.SIPGuard
	if s.SlowFailures != 20 || s.SlowWindow != time.Hour || s.ExtFailures != 10 || s.ExtSources != 3 || s.ExtWindow != 10*time.Minute ||
		s.Net4Bits != 24 || s.NetFailures4 != 15 || s.NetFailures6 != 5 || s.SiteWindow != 2*time.Hour || s.SiteCeiling != 20 ||
		s.TLSRate != 60 || s.Hold != 3*time.Second {
		t.Errorf("defaults: %+v", s)
	}
	off := strings.Replace(string(Example()), "[sipguard]\n", "[sipguard]\nslow_failures = 0\next_failures = 0\nhold = \"0s\"\n", 1)
	if c, err := Parse("off.toml", []byte(off)); err != nil || c.SIPGuard.SlowFailures != 0 || c.SIPGuard.ExtFailures != 0 || c.SIPGuard.Hold != 0 {
		t.Errorf("switched off: %v", err)
	}
	bad := strings.Replace(string(Example()), "[sipguard]\n", "[sipguard]\nnet4_bits = 40\next_sources = 0\nhold = \"5m\"\nsite_ceiling = -1\n", 1)
	_, err = Parse("bad.toml", []byte(bad))
	if err == nil {
		t.Fatal("bad settings accepted")
	}
	for _, want := range []string{"bad.toml", "net4_bits", "ext_sources", "hold", "site_ceiling"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// A block of a source that never proved its address is capped: 10 minutes by default, and
// never longer than an hour (a forged source would block whoever it names).
func TestSIPGuardUnprovenBlockTime(t *testing.T) {
	c, err := Parse("lab.toml", Example())
	if err != nil {
		t.Fatal(err)
	}
	if c.SIPGuard.UnprovenBlockTime != 10*time.Minute {
		t.Errorf("default unproven_block_time %s, want 10m", c.SIPGuard.UnprovenBlockTime)
	}
	bad := strings.Replace(string(Example()), "[sipguard]\n", "[sipguard]\nunproven_block_time = \"24h\"\n", 1)
	_, err = Parse("bad.toml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), "bad.toml:") || !strings.Contains(err.Error(), "unproven_block_time") {
		t.Errorf("24h accepted or unclear: %v", err)
	}
}
