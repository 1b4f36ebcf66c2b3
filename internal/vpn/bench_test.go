package vpn_test

import (
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab"
)

// benchExtra lets alice reach the PBX's echo and sink ports through the tunnel, and forwards
// the same ports from the remote's public address without it: the plain path to compare.
const benchExtra = `reach = ["sip", "udp/192.168.50.10:7777", "tcp/192.168.50.10:5201"]

[forward.bench_echo]
protocol = "udp"
ports = "7777"
to = "192.168.50.10"
from = ["192.0.2.20"]

[forward.bench_sink]
protocol = "tcp"
ports = "5201"
to = "192.168.50.10"
from = ["192.0.2.20"]
`

// BenchmarkTunnel measures the box's WireGuard (user space here: this kernel has none)
// between a remote phone and the PBX: TCP throughput through the tunnel, and the UDP echo
// round trip through it against the same path without it (a port forward). It prints
//
//	vpn_throughput_mbit <tunnel>          (and vpn_plain_throughput_mbit for the same path without)
//	vpn_added_latency_ms p50=… p95=…
func BenchmarkTunnel(b *testing.B) {
	s := newSite(b, benchExtra)
	l := s.l
	conf, err := s.client.ClientConfig("alice")
	if err != nil {
		b.Fatal(err)
	}
	s.phoneUp(lab.HostRemote, ifName("p"), conf)
	echoUDP(b, l, lab.HostPBX, "0.0.0.0:7777")
	got := sink(b, l, lab.HostPBX, "0.0.0.0:5201")

	const samples = 300
	tunnel, plain := rtts(b, l, lab.PBX4+":7777", samples), rtts(b, l, lab.BoxWAN4+":7777", samples)
	const size = 128 << 20
	b.ResetTimer()
	var mbit, plainMbit float64
	for range b.N {
		mbit = throughput(b, l, lab.PBX4+":5201", size, got)
		plainMbit = throughput(b, l, lab.BoxWAN4+":5201", size, got)
	}
	b.StopTimer()
	p50, p95 := pct(tunnel, 50)-pct(plain, 50), pct(tunnel, 95)-pct(plain, 95)
	b.ReportMetric(mbit, "mbit/s")
	b.ReportMetric(p50, "added_p50_ms")
	b.ReportMetric(p95, "added_p95_ms")
	fmt.Printf("vpn_throughput_mbit %.0f\nvpn_plain_throughput_mbit %.0f\nvpn_added_latency_ms p50=%.3f p95=%.3f\n", mbit, plainMbit, p50, p95)
	fmt.Printf("vpn_rtt_ms tunnel_p50=%.3f tunnel_p95=%.3f plain_p50=%.3f plain_p95=%.3f\n", pct(tunnel, 50), pct(tunnel, 95), pct(plain, 50), pct(plain, 95))
}

// rtts sends n UDP echoes from the remote phone to addr, one at a time, in milliseconds.
func rtts(b *testing.B, l *lab.Lab, addr string, n int) []float64 {
	c, err := l.DialUDP(lab.HostRemote, "", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var out []float64
	buf := make([]byte, 200)
	for i := range n + 10 {
		start := time.Now()
		if _, err := c.Write(buf[:160]); err != nil { // a 20 ms G.711 frame
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err != nil {
			b.Fatalf("echo %d from %s: %v", i, addr, err)
		}
		if i >= 10 { // the first ones set up conntrack and ARP
			out = append(out, float64(time.Since(start).Microseconds())/1000)
		}
	}
	return out
}

func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// sink accepts connections on host and reports each one's byte count when it ends.
func sink(b *testing.B, l *lab.Lab, host, addr string) <-chan int64 {
	ln, err := l.ListenTCP(host, addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	got := make(chan int64, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			got <- n
		}
	}()
	return got
}

// throughput sends size bytes from the remote phone to addr and returns Mbit/s, timed until
// the receiver has them all.
func throughput(b *testing.B, l *lab.Lab, addr string, size int64, got <-chan int64) float64 {
	c, err := l.DialTCP(lab.HostRemote, addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	start := time.Now()
	for sent := int64(0); sent < size; sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	select {
	case n := <-got:
		if n < size {
			b.Fatalf("the PBX got %d of %d bytes", n, size)
		}
	case <-time.After(2 * time.Minute):
		b.Fatal("the transfer did not end")
	}
	return float64(size*8) / time.Since(start).Seconds() / 1e6
}
