package netcfg

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/lab"
)

const labRelay = `
[relay]
endpoint = "192.0.2.40:51830"
public_key = "uEYQ0OdzrY4ogSEsn2UdpFrlUcnNiWpZZyk1RnOrBUM="
interface = "relay0"
`

// The relay's tunnel as a user reads it: one more uplink for the blocklist, the trunks'
// forwards and the masquerade, and its connections answered back through it.
func TestRelayRules(t *testing.T) {
	c := mustParse(t, "lab.toml", append(append([]byte{}, lab.Config...), labRelay...))
	// The golden file holds relayRules' own part only, so that other parts' rules never change it.
	own := &Table{Name: TableName, Sets: []*Set{{Name: "uplinks", Type: TypeIfname, Elems: []string{"wan0", "lte0"}, Comment: "interfaces to the internet"}}}
	relayRules(c, own)
	golden(t, "relay.nft", own.Text())
	text := Build(c).Text()
	for _, want := range []string{
		`elements = { "wan0", "lte0", "relay0" }`,
		`iifname "relay0" ct state new counter ct mark set ct mark or 0x00004000 comment "a connection that came in through the relay is answered through it"`,
		`iifname != @uplinks ct mark and 0x00004000 == 0x00004000 counter meta mark set meta mark or 0x00004000 comment "replies from the LAN go back through the relay"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	off := Build(mustParse(t, "lab.toml", lab.Config)).Text()
	if strings.Contains(off, "relay0") || strings.Contains(off, "relay_mark") {
		t.Error("without [relay] the ruleset mentions the relay")
	}
}

// The relay's rules in the kernel: loaded over netlink and as nft text, the kernel holds
// the same ruleset.
func TestRelayRulesKernel(t *testing.T) {
	nsA, fw := testNS(t, "rlA")
	nsB, _ := testNS(t, "rlB")
	tbl := Build(mustParse(t, "lab.toml", append(append([]byte{}, lab.Config...), labRelay...)))
	if err := fw.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", nsB, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(tbl.Text())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f rejected the rendered text: %v\n%s", err, out)
	}
	a, b := listing(t, nsA), listing(t, nsB)
	if a != b {
		t.Errorf("netlink and text rulesets differ:\n%s", diff(b, a))
	}
	if !strings.Contains(a, "ct mark set ct mark | 0x00004000") || !strings.Contains(a, "meta mark set meta mark | 0x00004000") {
		t.Errorf("the kernel lacks the relay's marks:\n%s", a)
	}
}
