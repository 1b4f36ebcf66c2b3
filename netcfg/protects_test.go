package netcfg

import (
	"errors"
	"net/netip"
	"testing"
)

// Protects and Block give the same answer on the same input: the config's protections, a
// resolved peer name, a DHCP lease's resolver (SetProtected), a network wider than a
// protected host, a host inside a protected network, a mapped IPv4 address; and once the
// lease's protection is gone, both let its resolver be blocked.
func TestProtectsAgreesWithBlock(t *testing.T) {
	_, fw := testNS(t, "protects")
	w := runOwner(t, fw, t.TempDir(), labConfig(t), nil)
	if err := w.SetResolved(PeerKey("trunk"), []netip.Addr{netip.MustParseAddr("198.18.88.8")}); err != nil {
		t.Fatal(err)
	}
	if err := w.SetProtected("lease", LearnedResolvers("LTE", []netip.Addr{netip.MustParseAddr("198.18.77.53")})); err != nil {
		t.Fatal(err)
	}
	check := func(p string, want bool, wantWhy string) {
		t.Helper()
		why, ok := w.Protects(pfx(p))
		_, err := w.Block(BlockRequest{Prefix: pfx(p), Source: SourceManual, By: "test", Force: true})
		var pe *ProtectedError
		refused := errors.As(err, &pe)
		if !refused && err != nil {
			t.Errorf("block %s: %v", p, err)
		}
		if ok != want || refused != want {
			t.Errorf("%s: Protects says %v (%q), Block refused: %v (%v); want %v", p, ok, why, refused, err, want)
			return
		}
		if want && (why != pe.By.Why || why != wantWhy) {
			t.Errorf("%s: Protects says %q, Block %q; want %q", p, why, pe.By.Why, wantWhy)
		}
		if !want {
			if _, err := w.Unblock(pfx(p), "test"); err != nil {
				t.Errorf("unblock %s: %v", p, err)
			}
		}
	}
	for _, c := range []struct {
		p    string
		want bool
		why  string
	}{
		{"198.51.100.1", true, "the gateway of uplink FTTC"},                  // a protected host
		{"198.51.100.0/31", true, "the gateway of uplink FTTC"},               // a network wider than it
		{"192.168.50.20", true, "the office LAN"},                             // a host inside a protected network
		{"192.168.50.128/25", true, "the office LAN"},                         // a network inside it
		{"192.168.0.0/16", true, "the office LAN"},                            // a network wider than it
		{"::ffff:192.168.50.20", true, "the office LAN"},                      // the same host, mapped
		{"2001:db8:1::30", true, "an admin network"},                          // IPv6
		{"198.18.88.8", true, "trusted SIP peer trunk (trunk)"},               // a resolved peer name
		{"198.18.77.53", true, "a DNS resolver uplink LTE's DHCP lease gave"}, // SetProtected
		{"198.18.77.0/24", true, "a DNS resolver uplink LTE's DHCP lease gave"},
		{"198.18.9.9", false, ""},
		{"198.18.9.0/24", false, ""},
		{"2001:db8:dead::1", false, ""},
	} {
		check(c.p, c.want, c.why)
	}
	if err := w.SetProtected("lease", nil); err != nil {
		t.Fatal(err)
	}
	check("198.18.77.53", false, "")
}
