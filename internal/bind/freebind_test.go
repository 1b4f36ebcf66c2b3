package bind

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

// A LAN service binds its address before the address is on an interface (IPv4 and IPv6),
// where a plain listen is refused. No packet is sent: the documentation addresses below are
// only bound.
func TestListenFree(t *testing.T) {
	for _, s := range []string{"198.51.100.77:0", "[2001:db8:77::7]:0"} {
		a := netip.MustParseAddrPort(s)
		if ln, err := net.Listen("tcp", s); err == nil {
			ln.Close()
			t.Fatalf("%s is on this machine: pick an address that is not", s)
		}
		ln, err := ListenFree(context.Background(), a)
		if err != nil {
			t.Fatalf("listen on %s with IP_FREEBIND: %v", s, err)
		}
		got := netip.MustParseAddrPort(ln.Addr().String())
		ln.Close()
		if got.Addr() != a.Addr() || got.Port() == 0 {
			t.Fatalf("listening on %s, want %s", got, a.Addr())
		}
		lc := net.ListenConfig{Control: Freebind}
		pc, err := lc.ListenPacket(context.Background(), "udp", s)
		if err != nil {
			t.Fatalf("udp on %s with IP_FREEBIND: %v", s, err)
		}
		pc.Close()
	}
}
