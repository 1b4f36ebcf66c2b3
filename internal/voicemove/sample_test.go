package voicemove

import (
	"slices"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/netcfg"
)

// The rules whose counters the move reads are in the ruleset netcfg builds, under the names
// it looks for: a rename there must not make every flood invisible here.
func TestDroppedRulesExist(t *testing.T) {
	c, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		t.Fatal(err)
	}
	tbl := netcfg.Build(c)
	for chain, comments := range droppedRules {
		i := slices.IndexFunc(tbl.Chains, func(ch *netcfg.Chain) bool { return ch.Name == chain })
		if i < 0 {
			t.Errorf("no chain %s in the ruleset", chain)
			continue
		}
		for _, want := range comments {
			if !slices.ContainsFunc(tbl.Chains[i].Rules, func(r netcfg.Rule) bool { return r.Comment == want }) {
				t.Errorf("chain %s has no rule %q", chain, want)
			}
		}
	}
}

// Rates come over the window's span; a counter that goes back starts afresh.
func TestWindowRates(t *testing.T) {
	w := window{span: 2 * time.Second}
	t0 := time.Unix(1000, 0)
	at := func(s float64, dropped, wan0, lte0 uint64) Counters {
		return Counters{At: t0.Add(time.Duration(s * float64(time.Second))), Dropped: dropped, RX: map[string]uint64{"wan0": wan0, "lte0": lte0}}
	}
	if _, _, ok := w.rates(); ok {
		t.Fatal("rates from nothing")
	}
	w.add(at(0, 0, 0, 0))
	w.add(at(1, 250_000, 500_000, 10_000))
	w.add(at(2, 500_000, 1_000_000, 20_000))
	w.add(at(3, 1_000_000, 1_500_000, 30_000)) // the first look leaves the span
	d, rx, ok := w.rates()
	if !ok || d != 3e6 || rx["wan0"] != 4e6 || rx["lte0"] != 80e3 {
		t.Fatalf("rates %v %v %v, want 3 Mbit/s dropped, 4 Mbit/s and 80 kbit/s received", d, rx, ok)
	}
	if got := droppedOn("wan0", d, rx); got != 3e6-80e3 {
		t.Fatalf("dropped on wan0 at least %v, want all but what lte0 received", got)
	}
	if got := droppedOn("lte0", d, rx); got != 0 {
		t.Fatalf("dropped on lte0 at least %v, want 0 (wan0 received more than was dropped)", got)
	}
	w.add(at(3.5, 10, 1_600_000, 30_000)) // the ruleset was made again
	if _, _, ok := w.rates(); ok {
		t.Fatal("rates across a counter reset")
	}
}
