package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDNSAndTimeDefaults(t *testing.T) {
	c, err := Parse("example.toml", Example())
	if err != nil {
		t.Fatal(err)
	}
	d := c.DNS
	if !d.Enabled || d.Domain != "office.internal" || d.BoxName != "gateway" || d.PBXName != "pbx" || d.CacheSize != 4096 ||
		d.RateLimit != 1000 || d.RateBurst != 5000 || len(d.Resolvers.Primary) != 1 || d.Resolvers.Primary[0].Addr != netip.MustParseAddr("198.51.100.53") {
		t.Errorf("[dns] defaults: %+v", d)
	}
	tm := c.Time
	if len(tm.Servers) != 3 || !tm.SetClock || !tm.ServeLAN || tm.Interval != 15*time.Minute {
		t.Errorf("[time] defaults: %+v", tm)
	}
	off, err := Parse("off.toml", []byte(strings.Replace(string(Example()), "[time]\n", "[time]\nset_clock = false\nserve_lan = false\n", 1)))
	if err != nil || off.Time.SetClock || off.Time.ServeLAN {
		t.Errorf("set_clock/serve_lan = false not taken: %+v %v", off.Time, err)
	}
}

// Each bad setting is reported with its file, line, column and field.
func TestDNSAndTimeErrors(t *testing.T) {
	bad := strings.Replace(string(Example()), "[dns]\n", "[dns]\ndomain = \"office..lan\"\nbox_name = \"my box\"\ncache_size = 3\nrate_burst = 10\nrebind_allow = [\"-x.example\"]\n", 1)
	bad = strings.Replace(bad, "[dns.resolvers]\n", "[dns.resolvers]\nbackup = [\"192.168.1.1\", \"127.0.0.1\"]\n", 1)
	bad = strings.Replace(bad, "[time]\n", "[time]\nservers = [\"ntp..example\", \"127.0.0.1\"]\ninterval = \"1s\"\n", 1)
	_, err := Parse("bad.toml", []byte(bad))
	es, ok := err.(Errors)
	if !ok {
		t.Fatalf("bad [dns]/[time] accepted or odd error: %v", err)
	}
	lines := strings.Split(bad, "\n")
	want := map[string]string{
		"dns.domain": "not a domain name", "dns.box_name": "not a host name", "dns.cache_size": "between 16", "dns.rate_burst": "between rate_limit",
		"dns.rebind_allow": "-x.example", "dns.resolvers.backup": "127.0.0.1", "time.servers": "ntp..example", "time.interval": "between 16s",
	}
	for field, msg := range want {
		found := false
		for _, e := range es {
			if e.Field != field || !strings.Contains(e.Msg, msg) {
				continue
			}
			found = true
			key := field[strings.LastIndexByte(field, '.')+1:]
			if e.File != "bad.toml" || e.Line < 1 || e.Col < 1 || !strings.HasPrefix(lines[e.Line-1], key+" =") {
				t.Errorf("%s: at %d:%d, which is not where it is written", field, e.Line, e.Col)
			}
		}
		if !found {
			t.Errorf("no error for %s (%q) in:\n%v", field, msg, err)
		}
	}
	// The box's own LAN address as an ISP resolver would loop.
	if !strings.Contains(err.Error(), "192.168.1.1 is the box itself") {
		t.Errorf("the box's own address accepted as a resolver:\n%v", err)
	}
}
