package sipguard_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// timedOwner records when each block reached the kernel (the owner's Block returned).
type timedOwner struct {
	*netcfg.Owner
	mu sync.Mutex
	at map[netip.Addr]time.Time
}

func (f *timedOwner) Block(r netcfg.BlockRequest) (netcfg.Entry, error) {
	e, err := f.Owner.Block(r)
	if err == nil {
		f.mu.Lock()
		f.at[r.Prefix.Addr()] = time.Now()
		f.mu.Unlock()
	}
	return e, err
}

func (f *timedOwner) when(a netip.Addr) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.at[a]
	return t, ok
}

// BenchmarkTimeToBlock (root): 100 attackers, each sends a scanner's first packet and then a
// probe every 200 µs for 100 ms. Time to block: from sending the offending packet (it enters
// the box microseconds later) until the kernel set holds the source (Block returned). Leaked:
// probes the PBX received that were sent after that moment.
func BenchmarkTimeToBlock(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root (network namespaces)")
	}
	l, err := lab.New(lab.Unique(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if err := l.ConfigureBox(); err != nil {
		b.Fatal(err)
	}
	const trials = 100
	for i := 0; i < trials; i++ {
		if _, err := l.Run(lab.HostAttacker, "ip", "addr", "add", fmt.Sprintf("192.0.2.%d/24", 150+i), "dev", "eth0"); err != nil {
			b.Fatal(err)
		}
	}
	text := strings.Replace(string(lab.Config), "[pbx]\n", "[pbx]\nallow_sip_from_anywhere = true\n", 1)
	cfg, err := config.Parse("lab.toml", []byte(text))
	if err != nil {
		b.Fatal(err)
	}
	nsh, err := netns.GetFromName(l.NS(lab.HostBox))
	if err != nil {
		b.Fatal(err)
	}
	defer nsh.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := startOwner(b, int(nsh), cfg)
	fw := &timedOwner{Owner: w, at: map[netip.Addr]time.Time{}}
	g, err := sipguard.New(sipguard.Options{Thresholds: sipguard.ThresholdsFrom(cfg), Blocker: fw,
		EvidenceAfter: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	var cp *sipguard.Capturer
	if err := l.Do(lab.HostBox, func() (err error) { cp, err = sipguard.Listen(lab.BoxLANIf, []uint16{5060}); return err }); err != nil {
		b.Fatal(err)
	}
	go cp.Serve(ctx, g)
	go g.Run(ctx)
	sink, err := l.ListenUDP(lab.HostPBX, lab.PBX4+":5060")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	type arrival struct {
		src  netip.Addr
		sent time.Time
	}
	var amu sync.Mutex
	var arrivals []arrival
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := sink.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			// Probes carry their send time in the Call-ID.
			msg := string(buf[:n])
			if i := strings.Index(msg, "Call-ID: t"); i >= 0 {
				ns, _ := strconv.ParseInt(strings.Fields(msg[i+10:])[0], 10, 64)
				amu.Lock()
				arrivals = append(arrivals, arrival{from.Addr().Unmap(), time.Unix(0, ns)})
				amu.Unlock()
			}
		}
	}()
	// Warm the path (neighbour entries on every hop), as on a box that has been running.
	warm, err := l.DialUDP(lab.HostAttacker, lab.Attacker4+":5060", lab.BoxWAN4+":5060")
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, _ = warm.Write([]byte(probe(lab.Attacker4, "Yealink", time.Now())))
		time.Sleep(10 * time.Millisecond)
		amu.Lock()
		n := len(arrivals)
		amu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("nothing reaches the PBX")
		}
	}
	warm.Close()
	b.ResetTimer()
	var ttb []time.Duration
	leakedMax := 0
	for i := 0; i < trials; i++ {
		src := fmt.Sprintf("192.0.2.%d", 150+i)
		c, err := l.DialUDP(lab.HostAttacker, src+":5060", lab.BoxWAN4+":5060")
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		_, _ = c.Write([]byte(probe(src, "friendly-scanner", t0)))
		for end := t0.Add(100 * time.Millisecond); time.Now().Before(end); {
			_, _ = c.Write([]byte(probe(src, "Yealink", time.Now())))
			time.Sleep(200 * time.Microsecond)
		}
		c.Close()
		a := netip.MustParseAddr(src)
		at, ok := fw.when(a)
		for wait := time.Now().Add(2 * time.Second); !ok && time.Now().Before(wait); at, ok = fw.when(a) {
			time.Sleep(time.Millisecond)
		}
		if !ok {
			st, _ := g.Snapshot()
			b.Fatalf("%s was not blocked (%+v)", src, st)
		}
		ttb = append(ttb, at.Sub(t0))
		time.Sleep(20 * time.Millisecond) // let the last probes in flight land
		amu.Lock()
		leaked := 0
		for _, ar := range arrivals {
			if ar.src == a && ar.sent.After(at) {
				leaked++
			}
		}
		amu.Unlock()
		leakedMax = max(leakedMax, leaked)
	}
	b.StopTimer()
	b.Logf("time to block per trial: %v", ttb)
	sort.Slice(ttb, func(i, j int) bool { return ttb[i] < ttb[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(ttb[len(ttb)/2]), "p50_ms")
	b.ReportMetric(ms(ttb[len(ttb)*99/100]), "p99_ms")
	b.ReportMetric(float64(leakedMax), "leaked_max")
}

func probe(src, ua string, sent time.Time) string {
	return "OPTIONS sip:100@" + lab.BoxWAN4 + " SIP/2.0\r\nVia: SIP/2.0/UDP " + src + ":5060;branch=z9hG4bK" + strconv.FormatInt(sent.UnixNano(), 10) + "\r\n" +
		"From: <sip:100@" + src + ">;tag=1\r\nTo: <sip:100@" + lab.BoxWAN4 + ">\r\nCall-ID: t" + strconv.FormatInt(sent.UnixNano(), 10) + " \r\n" +
		"CSeq: 1 OPTIONS\r\nUser-Agent: " + ua + "\r\nContent-Length: 0\r\n\r\n"
}

// BenchmarkHandle100k: the whole per-packet path (IP/UDP decode, evidence ring, parse,
// detectors) with 100,000 distinct sources tracked. Run with -cpu 1 for the one-core rate;
// reports messages per second and the process's resident memory.
func BenchmarkHandle100k(b *testing.B) {
	g, err := sipguard.New(sipguard.Options{Thresholds: sipguard.ThresholdsFrom(mustLabConfig(b)), Blocker: nopBlocker{}})
	if err != nil {
		b.Fatal(err)
	}
	pbx := netip.MustParseAddr(lab.PBX4)
	const sources = 100000
	pkts := make([][]byte, 0, 64)
	for i := 0; i < 64; i++ {
		src := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
		m := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK%d\r\nFrom: <sip:10%02d@%s>;tag=%d\r\nTo: <sip:10%02d@%s>\r\n"+
			"Call-ID: %d@%s\r\nCSeq: %d REGISTER\r\nContact: <sip:10%02d@%s:5060>\r\nUser-Agent: Yealink SIP-T46S 66.86.0.15\r\n"+
			"Authorization: Digest username=\"a10%02d\", realm=\"pbx\", nonce=\"abc\", uri=\"sip:x\", response=\"0123456789abcdef\"\r\nExpires: 120\r\nContent-Length: 0\r\n\r\n",
			lab.PBX4, src, i, i, lab.PBX4, i, i, lab.PBX4, i, src, i, i, src, i)
		pkts = append(pkts, ipv4udp(src, pbx, []byte(m)))
	}
	now := time.Now()
	for i := 0; i < sources; i++ {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p := append([]byte(nil), pkts[i%len(pkts)]...)
		copy(p[12:16], src.AsSlice())
		g.Handle(now, p)
	}
	if _, n := g.Snapshot(); n < sources {
		b.Fatalf("tracking %d sources", n)
	}
	runtime.GC()
	debug.FreeOSMemory()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		// One message a second per source keeps every window realistic.
		g.Handle(now.Add(time.Duration(i)*20*time.Millisecond), pkts[i%len(pkts)])
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(rssMB(), "rss_MB")
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return -1
}

// nopBlocker blocks nothing: the per-packet benchmark never reaches it.
type nopBlocker struct{}

func (nopBlocker) Block(netcfg.BlockRequest) (netcfg.Entry, error)    { return netcfg.Entry{}, nil }
func (nopBlocker) Unblock(netip.Prefix, string) (netcfg.Entry, error) { return netcfg.Entry{}, nil }
func (nopBlocker) Lookup(netip.Prefix) (netcfg.Entry, bool)           { return netcfg.Entry{}, false }
func (nopBlocker) Protects(netip.Prefix) (string, bool)               { return "", false }
func (nopBlocker) Watch() (<-chan struct{}, func())                   { return nil, func() {} }
func (nopBlocker) SetFeed(string, []netip.Prefix, time.Duration) (netcfg.FeedResult, error) {
	return netcfg.FeedResult{}, nil
}

func mustLabConfig(b testing.TB) *config.Config {
	cfg, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

func ipv4udp(src, dst netip.Addr, payload []byte) []byte {
	p := make([]byte, 28, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, 17
	n := 28 + len(payload)
	p[2], p[3] = byte(n>>8), byte(n)
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	p[20], p[21], p[22], p[23] = 0x13, 0xc4, 0x13, 0xc4
	u := 8 + len(payload)
	p[24], p[25] = byte(u>>8), byte(u)
	return append(p, payload...)
}
