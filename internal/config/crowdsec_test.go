package config

import (
	"strings"
	"testing"
	"time"
)

func TestCrowdSecDefaultsAndErrors(t *testing.T) {
	on := strings.Replace(string(Example()), "[crowdsec]\nenabled = false\n", "[crowdsec]\nenabled = true\nurl = \"https://lapi.example.net:8080\"\nbouncer_key_file = \"/perm/k\"\n", 1)
	c, err := Parse("on.toml", []byte(on))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.CrowdSec; s.Interval != 2*time.Second || s.MaxBodyMB != 64 {
		t.Errorf("defaults: %+v", s)
	}
	for _, c := range []struct{ set, want string }{
		{"url = \"http://lapi.example.net:8080\"\nbouncer_key_file = \"/k\"", "in the clear"},
		{"url = \"lapi:8080\"\nbouncer_key_file = \"/k\"", "not an http(s) address"},
		{"url = \"https://l:1\"", "give bouncer_key_file"},
		{"url = \"https://l:1\"\nmachine_id = \"a\"", "both machine_id and machine_password_file"},
		{"url = \"https://l:1\"\nbouncer_key_file = \"/k\"\npin_sha256 = \"abc\"", "64 hex digits"},
		{"url = \"https://l:1\"\nbouncer_key_file = \"/k\"\ninterval = \"10ms\"", "from 500ms to 1h"},
		{"url = \"https://l:1\"\nbouncer_key_file = \"/k\"\ncert_file = \"/c\"", "both cert_file and key_file"},
	} {
		bad := strings.Replace(string(Example()), "[crowdsec]\nenabled = false\n", "[crowdsec]\nenabled = true\n"+c.set+"\n", 1)
		_, err := Parse("bad.toml", []byte(bad))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "bad.toml:") {
			t.Errorf("%q: error %v, want one with its line saying %q", c.set, err, c.want)
		}
	}
}
