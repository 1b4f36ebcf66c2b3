package shaper

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab/labtest"
)

// tcShow is `tc qdisc show dev IF` in ns.
func tcShow(t *testing.T, ns, iface, what string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "tc", what, "show", "dev", iface).CombinedOutput()
	if err != nil {
		t.Fatalf("tc %s show: %v: %s", what, err, out)
	}
	return string(out)
}

func ipNS(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// The shaper is the owner of its qdiscs: a tree someone deletes or changes comes back, an
// interface that goes and comes back (a modem re-enumerating) gets its tree again, and the
// tree goes when the shaper stops.
func TestOwnerRepairs(t *testing.T) {
	t.Parallel() // namespaces, interfaces and ports of its own
	ns, h := labtest.Netns(t, "shp")
	ipNS(t, ns, "link", "add", "shpa0", "type", "veth", "peer", "name", "shpb0")
	ipNS(t, ns, "link", "set", "shpa0", "up")
	ipNS(t, ns, "link", "set", "shpb0", "up")
	s := New(Options{Links: []Link{{Name: "FTTC", Interface: "shpa0", Rate: 4_000_000}}, NetNS: int(h), Every: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	has := func() bool {
		q := tcShow(t, ns, "shpa0", "qdisc")
		c := tcShow(t, ns, "shpa0", "class")
		return strings.Contains(q, "qdisc htb 1: root") && strings.Contains(q, "default 0x30") &&
			strings.Count(q, "qdisc pfifo") == 3 && strings.Contains(c, "class htb 1:10 parent 1:1 leaf 10: prio 0 rate 1140Kbit ceil 3800Kbit") &&
			strings.Contains(c, "class htb 1:1 root rate 3800Kbit ceil 3800Kbit")
	}
	labtest.WaitFor(t, "the shaper's tree (3.8 Mbit/s, voice first)", 10*time.Second, has)

	if out, err := exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "shpa0", "root").CombinedOutput(); err != nil {
		t.Fatalf("tc qdisc del: %v: %s", err, out)
	}
	labtest.WaitFor(t, "the deleted tree put back", 10*time.Second, func() bool { return has() && s.Status()[0].Repairs >= 1 })

	// Someone else's root in its place, with the shaper's handle.
	for _, args := range [][]string{{"del", "dev", "shpa0", "root"}, {"add", "dev", "shpa0", "root", "handle", "1:", "tbf", "rate", "1mbit", "burst", "10k", "latency", "300ms"}} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "tc", "qdisc"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("tc qdisc %v: %v: %s", args, err, out)
		}
	}
	labtest.WaitFor(t, "the replaced root put back", 10*time.Second, has)

	if out, err := exec.Command("ip", "netns", "exec", ns, "tc", "class", "change", "dev", "shpa0", "parent", "1:1", "classid", "1:10", "htb", "rate", "8kbit", "ceil", "8kbit").CombinedOutput(); err != nil {
		t.Fatalf("tc class change: %v: %s", err, out)
	}
	labtest.WaitFor(t, "the changed class put back", 10*time.Second, has)

	ipNS(t, ns, "link", "del", "shpa0")
	labtest.WaitFor(t, "the absent interface reported", 10*time.Second, func() bool { return s.Status()[0].Error != "" })
	ipNS(t, ns, "link", "add", "shpa0", "type", "veth", "peer", "name", "shpb0")
	ipNS(t, ns, "link", "set", "shpa0", "up")
	labtest.WaitFor(t, "the tree on the interface that came back", 10*time.Second, func() bool { return has() && s.Status()[0].Applied })

	// A reload with a new rate rewrites the classes (not a repair); one without the uplink
	// takes its tree away.
	repairs := s.Status()[0].Repairs
	s.Reload([]Link{{Name: "FTTC", Interface: "shpa0", Rate: 8_000_000}})
	labtest.WaitFor(t, "the new rate", 10*time.Second, func() bool {
		return strings.Contains(tcShow(t, ns, "shpa0", "class"), "class htb 1:1 root rate 7600Kbit ceil 7600Kbit")
	})
	if st := s.Status()[0]; st.Repairs != repairs || st.Rate != 7_600_000 {
		t.Errorf("after the reload: %+v (repairs before %d)", st, repairs)
	}
	s.Reload(nil)
	labtest.WaitFor(t, "the tree gone with the uplink's rate", 10*time.Second, func() bool {
		return !strings.Contains(tcShow(t, ns, "shpa0", "qdisc"), "htb")
	})
	s.Reload([]Link{{Name: "FTTC", Interface: "shpa0", Rate: 4_000_000}})
	labtest.WaitFor(t, "the tree back with the rate", 10*time.Second, has)

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	if q := tcShow(t, ns, "shpa0", "qdisc"); strings.Contains(q, "htb") {
		t.Errorf("the tree outlived the shaper:\n%s", q)
	}
}
