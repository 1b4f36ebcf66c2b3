package daemon

import (
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
)

func labConfig(t *testing.T, edit func(string) string) *config.Config {
	t.Helper()
	c, err := config.Parse("lab.toml", []byte(edit(string(lab.Config))))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A reload says which settings only a restart takes, and restarts only the parts whose
// start settings changed.
func TestReloadSaysWhatNeedsARestart(t *testing.T) {
	same := func(s string) string { return s }
	prev := labConfig(t, same)
	next := labConfig(t, func(s string) string {
		s = strings.Replace(s, `targets = ["icmp:192.0.2.53"`, `targets = ["icmp:192.0.2.54"`, 1)
		return strings.Replace(s, `site = "Lab Office"`, `site = "Lab Office (renamed)"`, 1)
	})
	got := strings.Join(restartNeeded(prev, next), "; ")
	for _, want := range []string{"wan.targets", "site in sipguard's abuse reports"} {
		if !strings.Contains(got, want) {
			t.Errorf("restart needed: %q, want it to name %s", got, want)
		}
	}
	if r := restartNeeded(prev, labConfig(t, same)); len(r) != 0 {
		t.Errorf("an unchanged config needs a restart of %v", r)
	}
	off := labConfig(t, func(s string) string { return strings.Replace(s, "[sipguard]\n", "[sipguard]\nenabled = false\n", 1) })
	for _, s := range specs() {
		if s.startKey == nil {
			continue
		}
		changed := s.startKey(prev) != s.startKey(next)
		if changed {
			t.Errorf("%s would restart for a site rename or new probe targets", s.name)
		}
		if s.name == "sipguard" && s.startKey(prev) == s.startKey(off) {
			t.Error("switching sipguard off does not restart (stop) it")
		}
	}
}
