package netcfg

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// What the box turns away from the internet is noted by source and port in the kernel, on
// a ruleset without NFLOG, and outlives a re-apply of the ruleset.
func TestDroppedNoted(t *testing.T) {
	l := labtest.New(t, "nft")
	if err := l.ConfigureBox(); err != nil {
		t.Fatal(err)
	}
	h, err := netns.GetFromName(l.NS(lab.HostBox))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	fw := New(int(h))
	tbl := Build(mustParse(t, "lab.toml", lab.Config))
	if err := fw.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	conn, err := l.DialUDP(lab.HostAttacker, "", net.JoinHostPort(lab.BoxWAN4, "5099"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 3 {
		if _, err := conn.Write([]byte("knock")); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := l.DialTCP(lab.HostAttacker, net.JoinHostPort(lab.BoxWAN4, "2323"), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("TCP 2323 from the internet was let through")
	}
	noted := func() bool {
		ws, err := fw.Dropped(10)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if !slices.ContainsFunc(w.Sources, func(c DroppedCount) bool { return c.Key == lab.Attacker4 && c.Packets >= 4 }) ||
				!slices.ContainsFunc(w.UDP, func(c DroppedCount) bool { return c.Key == "5099" && c.Packets >= 3 }) ||
				!slices.ContainsFunc(w.TCP, func(c DroppedCount) bool { return c.Key == "2323" }) || w.Full {
				return false
			}
		}
		return len(ws) == len(DroppedWindows)
	}
	labtest.WaitFor(t, "the attacker noted in both windows", 10*time.Second, noted)
	if err := fw.Apply(tbl); err != nil {
		t.Fatal(err)
	}
	if !noted() {
		t.Error("a re-apply forgot who was dropped")
	}
}
