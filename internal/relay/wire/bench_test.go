package wire

import (
	"net"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/officeedge/appliance/internal/lab/labtest"
)

// BenchmarkBoxBindSend is the cost of one voice-sized outer packet through BoxBind.Send on a
// line bound to lo (root: SO_PRIORITY past 6 needs CAP_NET_ADMIN), once on the current line
// and once duplicated over two lines, against a plain UDP socket; a sink on 127.0.0.1 drains
// them.
func BenchmarkBoxBindSend(b *testing.B) {
	labtest.RequireRoot(b)
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := sink.Read(buf); err != nil {
				return
			}
		}
	}()
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	b.Run("plain-udp", func(b *testing.B) { // the floor: the same packet through net.UDPConn
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		pkt := make([]byte, 200)
		b.ReportAllocs()
		for range b.N {
			if _, err := c.WriteToUDPAddrPort(pkt, to); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, dup := range []bool{false, true} {
		name := "single"
		if dup {
			name = "duplicate"
		}
		b.Run(name, func(b *testing.B) {
			bb, err := NewBoxBind(BoxOptions{
				Lines:   []Line{{Name: "a", Interface: "lo"}, {Name: "b", Interface: "lo"}},
				Private: mustKey(b), RelayPublic: mustKey(b).PublicKey(),
				Relay: func() netip.AddrPort { return netip.AddrPort{} }, // no probes
			})
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := bb.Open(0); err != nil {
				b.Fatal(err)
			}
			defer bb.Close()
			bb.SetDuplicate(dup)
			if dup {
				// Both lines reachable, as if their probes were answered.
				for _, l := range bb.lines {
					l.interval.Store(int64(1 << 60))
					l.lastReply.Store(1)
				}
			}
			pkt := [][]byte{make([]byte, 200)} // G.711 20 ms + RTP + WireGuard
			ep := &conn.StdNetEndpoint{AddrPort: to}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := bb.Send(pkt, ep); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if st := bb.Stats(); dup != (st[1].DuplicateBytesOut > 0) {
				b.Fatalf("duplicate=%v but stats %+v", dup, st)
			}
		})
	}
}
