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
