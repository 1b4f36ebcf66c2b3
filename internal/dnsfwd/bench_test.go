package dnsfwd

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkCacheHit is the UDP fast path for a cached answer, a socket write included (to
// a loopback sink; the server writes a batch at a time): go test -bench CacheHit -benchmem -cpuprofile hit.prof ./internal/dnsfwd/
func BenchmarkCacheHit(b *testing.B) {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	go func() { // drain the sink
		buf := make([]byte, 1500)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	f := New(Options{LAN: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RateLimit: 1e6, RateBurst: 1e6, CacheSize: 4096})
	q := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
	q.SetEdns0(1232, false)
	f.cache.put(keyOf(q), answer("www.example.", 300, "192.0.2.80"), time.Now())
	wire, _ := q.Pack()
	u := f.newUDPReader(pc)
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	b.ReportAllocs()
	b.ResetTimer()
	u.cur = sink.LocalAddr()
	for range b.N {
		u.nout = 0
		u.packet(wire, to)
		_, _ = pc.WriteToUDPAddrPort(u.outs[0].Buffers[0], to)
	}
	if f.stats.cached.Load() < uint64(b.N) {
		b.Fatalf("%d of %d answered from the cache", f.stats.cached.Load(), b.N)
	}
}

// BenchmarkMiss is the slow path of a query a resolver must answer, from the unpacked
// query to the answer: a loopback resolver (miekg/dns's server) answers every name
// uncacheably. go test -bench Miss -benchmem -cpuprofile miss.prof ./internal/dnsfwd/
func BenchmarkMiss(b *testing.B) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		_ = w.WriteMsg(new(dns.Msg).SetRcode(r, dns.RcodeNameError))
	})}
	go func() { _ = srv.ActivateAndServe() }()
	defer func() { _ = srv.Shutdown() }()
	f := New(Options{LAN: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RateLimit: 1e6, RateBurst: 1e6,
		Fixed: []netip.AddrPort{pc.LocalAddr().(*net.UDPAddr).AddrPort()}})
	f.refresh()
	q := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if m := f.answerUpstream(q); m.Rcode != dns.RcodeNameError {
			b.Fatalf("answer %v", m)
		}
	}
}
