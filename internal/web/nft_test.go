package web

import (
	"testing"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/netcfg"
)

// The rules of one purpose read as one sentence when they differ in one word.
func TestOneSentence(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"SIP (from the internet, UDP port 5060): forwarded"}, "SIP (from the internet, UDP port 5060): forwarded"},
		{[]string{"SIP (from the internet, UDP port 5060): forwarded", "SIP (from the internet, TCP port 5060): forwarded"},
			"SIP (from the internet, UDP or TCP port 5060): forwarded"},
		{[]string{"mgmt (TCP port 80): let through", "mgmt (TCP port 443): let through"}, "mgmt (TCP port 80 or 443): let through"},
		{[]string{"nd (ICMPV6 nd-neighbor-solicit): let through", "nd (ICMPV6 nd-neighbor-advert): let through"},
			"nd (ICMPV6 nd-neighbor-solicit or nd-neighbor-advert): let through"},
		{[]string{"ping (ICMP echo-request): let through", "ping (ICMPV6 echo-request): let through"}, "ping (ICMP or ICMPV6 echo-request): let through"},
		{[]string{"x (TCP port 80): let through", "x (UDP port 81): let through"}, "x (2 rules)"},
		{[]string{"x (TCP): dropped", "x (TCP port 81): dropped"}, "x (2 rules)"},
	} {
		if got := oneSentence("x", c.in); got != c.want {
			t.Errorf("oneSentence(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// BenchmarkChainViews is the firewall in words for one status (the lab's ruleset, 160
// rules), its words made once for the config.
func BenchmarkChainViews(b *testing.B) {
	cfg, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		b.Fatal(err)
	}
	var hits []RuleHits
	for _, c := range netcfg.Build(cfg).Words() {
		for _, r := range c.Rules {
			hits = append(hits, RuleHits{Chain: c.Name, Comment: r.Comment, Packets: 1})
		}
	}
	var w ruleWords
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if cv := w.chainViews(cfg, hits); len(cv) == 0 {
			b.Fatal("no chains")
		}
	}
}
