package perclient

import (
	"net/netip"
	"testing"
)

// A tally says "first" once a period, names the worst client, and stays bounded under a
// flood of sources.
func TestTally(t *testing.T) {
	tl := NewTally(2)
	a, b := netip.MustParseAddr("192.168.50.20"), netip.MustParseAddr("::ffff:192.168.50.21")
	if !tl.Add(a) || tl.Add(a) || tl.Add(b) {
		t.Fatal("first is not the first Add of the period alone")
	}
	for i := range 1000 {
		tl.Add(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if len(tl.by) > 2 {
		t.Fatalf("%d clients remembered, at most 2", len(tl.by))
	}
	s := tl.Take()
	if s.Total != 1003 || s.Top != a || s.TopCount != 2 || s.Clients != 3 {
		t.Fatalf("summary %+v", s)
	}
	if s := tl.Take(); s.Total != 0 || !tl.Add(b) {
		t.Fatalf("not started again after Take: %+v", s)
	}
}
