package perclient

import (
	"net/netip"
	"testing"
)

// Each client has its own bucket, and the table stays bounded under a flood of sources.
func TestPerClientAndBounded(t *testing.T) {
	l := New(1, 3, 100)
	a, b := netip.MustParseAddr("192.168.50.20"), netip.MustParseAddr("192.168.50.21")
	for i := 0; i < 3; i++ {
		if !l.Allow(a) {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.Allow(a) {
		t.Fatal("a fourth request at once was allowed (burst 3)")
	}
	if !l.Allow(b) {
		t.Fatal("another client was held back by the first one's requests")
	}
	if !l.Allow(netip.MustParseAddr("::ffff:192.168.50.22")) || l.Allow(netip.MustParseAddr("::ffff:192.168.50.20")) {
		t.Fatal("an IPv4-mapped address counts apart from its IPv4 form")
	}
	for i := 0; i < 10_000; i++ {
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := len(l.seen); n > 100 {
		t.Fatalf("%d clients remembered, at most 100", n)
	}
}
