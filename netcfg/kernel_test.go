package netcfg

import (
	"errors"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// testNS makes an empty network namespace for one test and returns its name and a Firewall in it.
func testNS(t *testing.T, suffix string) (string, *Firewall) {
	t.Helper()
	labtest.RequireRoot(t, "nft")
	name, h := labtest.Netns(t, suffix)
	return name, New(int(h))
}

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

var expiresRE = regexp.MustCompile(` expires [0-9hms.]+`)

// listing is the kernel's view of the appliance table, with the seconds left on timeouts hidden.
func listing(t *testing.T, ns string) string {
	return expiresRE.ReplaceAllString(nft(t, ns, "list", "table", "inet", TableName), "")
}

func TestApplyKernelGolden(t *testing.T) {
	ns, fw := testNS(t, "fw")
	tbl := Build(mustParse(t, "lab.toml", lab.Config))
	// Another program's table must survive our applies untouched.
	nft(t, ns, "add", "table", "inet", "someone_else")
	nft(t, ns, "add", "chain", "inet", "someone_else", "c", "{ type filter hook input priority 10; policy accept; }")
	if err := fw.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	first := listing(t, ns)
	golden(t, "lab.kernel.nft", first)
	if err := fw.Apply(tbl); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if second := listing(t, ns); second != first {
		t.Errorf("applying the same config twice changed the ruleset:\n%s", diff(first, second))
	}
	if !strings.Contains(nft(t, ns, "list", "tables"), "table inet someone_else") {
		t.Errorf("another table was removed")
	}
}

// TestTextMatchesNetlink loads the rendered text with nft in one namespace and the netlink
// expressions in another: the kernel must hold the same ruleset, so `appliance check` shows
// exactly what the box applies.
func TestTextMatchesNetlink(t *testing.T) {
	for name, cfg := range map[string][]byte{"lab": lab.Config, "example": config.Example()} {
		t.Run(name, func(t *testing.T) {
			nsA, fw := testNS(t, "a")
			nsB, _ := testNS(t, "b")
			tbl := Build(mustParse(t, name, cfg))
			if err := fw.Apply(tbl); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("ip", "netns", "exec", nsB, "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(tbl.Text())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nft -f rejected the rendered text: %v\n%s", err, out)
			}
			if a, b := listing(t, nsA), listing(t, nsB); a != b {
				t.Errorf("netlink and text rulesets differ:\n%s", diff(b, a))
			}
		})
	}
}

func TestFailedApplyKeepsRuleset(t *testing.T) {
	ns, fw := testNS(t, "fail")
	good := Build(mustParse(t, "lab.toml", lab.Config))
	if err := fw.Apply(good); err != nil {
		t.Fatal(err)
	}
	if err := fw.Block(netip.MustParsePrefix("192.0.2.66/32"), time.Hour); err != nil {
		t.Fatal(err)
	}
	before := listing(t, ns)
	// Overlapping intervals are refused by the kernel half-way through the batch.
	bad := Build(mustParse(t, "lab.toml", lab.Config))
	bad.Sets = append(bad.Sets, &Set{Name: "broken", Type: TypeIPv4, Interval: true, Elems: []string{"10.0.0.0/8", "10.1.0.0/16"}})
	if err := fw.Apply(bad); err == nil {
		t.Fatal("the kernel accepted overlapping intervals; the test needs another failing batch")
	}
	if after := listing(t, ns); after != before {
		t.Errorf("a failed apply changed the running ruleset:\n%s", diff(before, after))
	}
}

func TestBlocklist(t *testing.T) {
	_, fw := testNS(t, "bl")
	if _, err := fw.Blocklist(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("before any apply, want ErrNotRunning, got %v", err)
	}
	if err := fw.Apply(Build(mustParse(t, "lab.toml", lab.Config))); err != nil {
		t.Fatal(err)
	}
	entries := map[string]time.Duration{
		"192.0.2.66/32": time.Hour, "198.18.0.0/15": 30 * time.Minute,
		"2001:db8:dead::/48": 0, "2001:db8:1::66/128": time.Hour,
	}
	for p, d := range entries {
		if err := fw.Block(netip.MustParsePrefix(p), d); err != nil {
			t.Fatalf("block %s: %v", p, err)
		}
	}
	// Blocking again replaces the timeout instead of failing or keeping the old one.
	if err := fw.Block(netip.MustParsePrefix("192.0.2.66/32"), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	entries["192.0.2.66/32"] = 2 * time.Hour
	check := func(when string) {
		t.Helper()
		list, err := fw.Blocklist()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]time.Duration{}
		for _, b := range list {
			got[b.Prefix.String()] = b.Expires
		}
		if len(got) != len(entries) {
			t.Fatalf("%s: blocklist %v, want %v", when, got, entries)
		}
		for p, d := range entries {
			e, ok := got[p]
			if !ok || (d == 0) != (e == 0) || e > d || e < d-time.Minute {
				t.Errorf("%s: %s expires in %v, want about %v", when, p, e, d)
			}
		}
	}
	check("after block")
	// A re-apply (daemon restart, config reload) keeps the blocklist with its time left.
	if err := fw.Apply(Build(mustParse(t, "lab.toml", lab.Config))); err != nil {
		t.Fatal(err)
	}
	check("after re-apply")
	for _, p := range []string{"192.0.2.10/32", "192.0.2.30/32", "192.0.2.0/24", "2001:db8:1::10/128"} {
		if err := fw.Block(netip.MustParsePrefix(p), time.Hour); !errors.Is(err, ErrProtected) {
			t.Errorf("block %s (trusted peer or admin): want ErrProtected, got %v", p, err)
		}
	}
	for p := range entries {
		if err := fw.Unblock(netip.MustParsePrefix(p)); err != nil {
			t.Errorf("unblock %s: %v", p, err)
		}
	}
	entries = nil
	check("after unblock")
	if err := fw.Unblock(netip.MustParsePrefix("192.0.2.99/32")); err == nil {
		t.Errorf("unblocking an address that is not blocked must say so")
	}
}
