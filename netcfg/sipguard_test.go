package netcfg

import (
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/lab"
)

// With a home country whose code holds denied destinations (+1876 inside +1), the kernel
// drops them as sipguard does: the denied prefix is matched before the home country passes.
func TestTollFraudDenyBeforeHomeCountry(t *testing.T) {
	src := strings.Replace(string(lab.Config), "[sipguard]\n", "[sipguard]\nhome_country = \"1\"\n", 1)
	text := Build(mustParse(t, "lab.toml", []byte(src))).Text()
	// Per dialling form (+, 00, 011): the denied destinations, then the home country's
	// return, then the drop of everything else international.
	var order []string
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.Contains(l, `"toll fraud: denied destination +1876"`):
			order = append(order, "1876")
		case strings.Contains(l, `"home country"`):
			order = append(order, "home")
		case strings.Contains(l, `"toll fraud: outside the home country"`):
			order = append(order, "other")
		}
	}
	if got, want := strings.Join(order, " "), "1876 home other 1876 home other 1876 home other"; got != want {
		t.Errorf("toll-fraud rules in the order %q, want %q", got, want)
	}
}
