package netcfg

import (
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/lab"
)

// Every rule of the lab's ruleset reads as a sentence that says what it matches and does,
// and carries its nft text.
func TestWords(t *testing.T) {
	tbl := Build(mustParse(t, "lab.toml", lab.Config))
	var all []string
	rules := 0
	for _, c := range tbl.Words() {
		if c.Words == "" {
			t.Errorf("chain %s has no words", c.Name)
		}
		for _, r := range c.Rules {
			rules++
			if r.Text == "" || strings.Contains(r.Words, "@") {
				t.Errorf("%s: %q / %q", c.Name, r.Words, r.Text)
			}
			all = append(all, c.Name+": "+r.Words)
		}
	}
	if want := len(strings.Split(strings.TrimSpace(ruleLines(tbl.Text())), "\n")); rules != want {
		t.Errorf("%d rules in words, %d in the text", rules, want)
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		"forward: SIP (from the internet, to " + lab.PBX4 + ", UDP port 5060, from trusted SIP trunk providers and remote offices, port-forwarded by the box): let through",
		"blocklist: blocked address (from blocked addresses): dropped",
		"input: everything else: dropped",
		"input: note dropped IPv4 sources (from the internet): noted, then the next rules decide",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no rule reads %q in:\n%s", want, text)
		}
	}
}

// ruleLines keeps the rule lines of a ruleset's text.
func ruleLines(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "\t\t") && strings.Contains(l, " counter ") || strings.HasPrefix(l, "\t\tcounter ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
