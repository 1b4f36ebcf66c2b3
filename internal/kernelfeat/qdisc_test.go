package kernelfeat

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/lab/labtest"
)

// The qdisc probes agree with tc in a namespace of the test's own, and leave nothing behind.
func TestQdiscsAgreeWithTC(t *testing.T) {
	ns, _ := labtest.Netns(t, "kfq")
	tc := func(args ...string) bool {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "tc", "qdisc"}, args...)...).CombinedOutput()
		if err != nil {
			t.Logf("tc qdisc %v: %v: %s", args, err, strings.TrimSpace(string(out)))
		}
		return err == nil
	}
	root := func(kind ...string) bool {
		defer tc("del", "dev", "lo", "root")
		return tc(append([]string{"add", "dev", "lo", "root", "handle", "1:"}, kind...)...)
	}
	want := map[string]bool{
		"qdisc htb":      root("htb"),
		"qdisc pfifo":    root("pfifo"),
		"qdisc tbf":      root("tbf", "rate", "1mbit", "burst", "10kb", "latency", "50ms"),
		"qdisc fq_codel": root("fq_codel"),
		"qdisc cake":     root("cake"),
	}
	qs, _ := probeAllQdiscs()
	for i, p := range qdiscProbes {
		w, ok := want[p.name]
		if !ok {
			continue
		}
		if got := qs[i] == nil; got != w {
			t.Errorf("%s: the probe says present=%v (%v), tc says %v", p.name, got, qs[i], w)
		}
	}
	got := map[string]bool{}
	for _, f := range Detect() {
		got[f.Name] = true
	}
	for _, n := range []string{"qdisc htb", "qdisc fq_codel", "qdisc cake", "qdisc clsact", "qdisc ingress", "ifb"} {
		if !got[n] {
			t.Errorf("Detect reports nothing about %q", n)
		}
	}
}
