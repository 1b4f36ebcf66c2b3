package netcfg

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run with -update after checking):\n%s", name, diff(string(want), got))
	}
}

// diff shows the first differing lines, enough to see what changed.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + a + "\n  got: " + b
		}
	}
	return ""
}

func mustParse(t *testing.T, name string, data []byte) *config.Config {
	t.Helper()
	c, err := config.Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGoldenExample(t *testing.T) {
	golden(t, "example.nft", Build(mustParse(t, "example.toml", config.Example())).Text())
}

func TestGoldenLab(t *testing.T) {
	golden(t, "lab.nft", Build(mustParse(t, "lab.toml", lab.Config)).Text())
}

// The policy a user checks in the generated text: what each door lets through.
func TestPolicy(t *testing.T) {
	text := Build(mustParse(t, "lab.toml", lab.Config)).Text()
	for _, want := range []string{
		// SIP only from trusted peers, over each transport, v4 and v6.
		`iifname @uplinks ip daddr 192.168.50.10 udp dport 5060 ip saddr @sip_peers4 ct status dnat counter accept comment "SIP"`,
		`iifname @uplinks ip6 daddr 2001:db8:50::10 tcp dport 5061 ip6 saddr @sip_peers6 counter accept comment "SIP TLS (IPv6)"`,
		// SSH only from admin networks on the uplinks.
		`iifname @uplinks ip saddr @admin4 tcp dport 22 counter accept comment "SSH from admin networks"`,
		// Forward and input end in a counted drop; the chains' policies are drop too.
		"type filter hook forward priority filter; policy drop;",
		"type filter hook input priority filter; policy drop;",
		// The blocklist runs before conntrack, and trusted peers pass it first.
		"type filter hook prerouting priority raw; policy accept;",
		`meta nfproto ipv4 oifname @uplinks counter masquerade`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if i, j := strings.Index(text, "@sip_peers4 counter accept"), strings.Index(text, "@block4 counter drop"); i < 0 || j < i {
		t.Errorf("trusted peers must be accepted before the blocklist drops")
	}
	// Nothing but the PBX and explicit forwards is a DNAT target: no phone, no printer.
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "dnat ip to") && !strings.Contains(line, "to 192.168.50.10") {
			t.Errorf("unexpected forward: %s", line)
		}
	}
}

func TestSIPFromAnywhere(t *testing.T) {
	src := strings.Replace(string(lab.Config), "[pbx]\n", "[pbx]\nallow_sip_from_anywhere = true\n", 1)
	text := Build(mustParse(t, "lab.toml", []byte(src))).Text()
	if !strings.Contains(text, `ip daddr 192.168.50.10 udp dport 5060 ct status dnat counter accept comment "SIP"`) {
		t.Errorf("allow_sip_from_anywhere must drop the source restriction:\n%s", text)
	}
}

func TestSplitDropsNestedNetworks(t *testing.T) {
	var ps []config.Prefix
	for _, s := range []string{"192.0.2.0/24", "192.0.2.10", "192.0.2.0/24", "2001:db8::/32", "2001:db8:1::/48", "198.51.100.7"} {
		var p config.Prefix
		if err := p.UnmarshalText([]byte(s)); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	v4, v6 := split(ps)
	if strings.Join(v4, " ") != "192.0.2.0/24 198.51.100.7" || strings.Join(v6, " ") != "2001:db8::/32" {
		t.Errorf("split = %v %v", v4, v6)
	}
}

func parseLab() (*config.Config, error) { return config.Parse("lab.toml", lab.Config) }
