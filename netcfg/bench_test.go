package netcfg

import (
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/internal/lab"
)

func benchNS(b *testing.B) *Firewall {
	b.Helper()
	name := lab.Unique(b) + "-bench"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s (benchmarks need root)", err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close(); _ = exec.Command("ip", "netns", "del", name).Run() })
	return New(int(h))
}

// BenchmarkApply is one full, atomic replacement of the lab's ruleset (what a start or a
// reload costs), with 1000 blocked addresses carried over.
func BenchmarkApply(b *testing.B) {
	fw := benchNS(b)
	c, err := parseLab()
	if err != nil {
		b.Fatal(err)
	}
	tbl := Build(c)
	if err := fw.Apply(tbl); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		a := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
		if err := fw.Block(netip.PrefixFrom(a, 32), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := fw.Apply(tbl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlock is adding one address to the kernel blocklist (the CLI's and sipguard's
// verdict path, including the trusted-peer check).
func BenchmarkBlock(b *testing.B) {
	fw := benchNS(b)
	c, err := parseLab()
	if err != nil {
		b.Fatal(err)
	}
	if err := fw.Apply(Build(c)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)})
		if err := fw.Block(netip.PrefixFrom(a, 32), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
