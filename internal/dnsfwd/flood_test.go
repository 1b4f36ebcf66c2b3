package dnsfwd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/officeedge/appliance/internal/lab/labtest"
)

// A flood of names from several LAN addresses, with a resolver that never answers (the
// worst case: every query waits its whole timeout), keeps the forwarder's goroutines within
// its bound; the flooders are answered REFUSED or SERVFAIL, never left waiting, and a
// legitimate client keeps getting its answers. In-process on loopback, to count goroutines.
func TestFloodBounded(t *testing.T) {
	hole, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	port := freePort(t)
	var logBuf labtest.LogBuffer
	f := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)},
		LAN: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Fixed: []netip.AddrPort{hole.LocalAddr().(*net.UDPAddr).AddrPort()},
		Domain: "office.internal", BoxName: "gateway", Static: map[string][]netip.Addr{"gateway": {netip.MustParseAddr("127.0.0.1")}},
		RateLimit: 1000, RateBurst: 5000, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	server := fmt.Sprintf("127.0.0.1:%d", port)
	legit := func() (string, error) { return ask(server, "127.0.0.3", "gateway.office.internal.") }
	for deadline := time.Now().Add(5 * time.Second); ; {
		if got, err := legit(); err == nil && got == "127.0.0.1" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the forwarder does not answer: %q %v", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	base := runtime.NumGoroutine()

	var peak atomic.Int64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() { // the goroutine count, every millisecond
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), int64(runtime.NumGoroutine())))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var rcodes [16]atomic.Int64
	var sent atomic.Int64
	flooders := []string{"127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"}
	for _, src := range flooders {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(server)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadBuffer(4 << 20)
		wg.Add(2)
		go func() { // every answer's rcode
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				m := new(dns.Msg)
				if m.Unpack(buf[:n]) == nil {
					rcodes[m.Rcode&15].Add(1)
				}
			}
		}()
		go func() { // 10000 distinct names in about 2 s: twice the burst and the rate
			defer wg.Done()
			for i := range 10000 {
				w, _ := new(dns.Msg).SetQuestion(fmt.Sprintf("n%d.%s.flood.example.", i, strings.ReplaceAll(src, ".", "-")), dns.TypeA).Pack()
				if _, err := c.Write(w); err == nil {
					sent.Add(1)
				}
				if i%50 == 49 {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	// The legitimate client asks meanwhile and is answered every time (a try may be lost
	// with the flood on the same socket; dig tries three times too).
	answered := 0
	for range 20 {
		var got string
		var err error
		for range 3 {
			if got, err = legit(); err == nil {
				break
			}
		}
		if err != nil || got != "127.0.0.1" {
			t.Errorf("the legitimate client during the flood: %q %v", got, err)
		} else {
			answered++
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait() // the last answers (SERVFAIL once the resolver timed out) and 3 s of quiet
	close(stop)
	<-sampled

	refused, servfail := rcodes[dns.RcodeRefused].Load(), rcodes[dns.RcodeServerFailure].Load()
	t.Logf("sent %d; REFUSED %d, SERVFAIL %d; goroutines %d before, %d at the peak; legit answered %d/20; stats %+v",
		sent.Load(), refused, servfail, base, peak.Load(), answered, f.Stats())
	if refused == 0 || servfail == 0 {
		t.Errorf("the flood got %d REFUSED and %d SERVFAIL; want both (over the limit; no slot left)", refused, servfail)
	}
	// Every query the forwarder read was answered: none left waiting in silence. The
	// kernel may drop some packets of a flood either way (the flooders' own sockets
	// overflow too); dropping over the limit would leave most unanswered.
	var got int64
	for i := range rcodes {
		got += rcodes[i].Load()
	}
	if read := int64(f.Stats().Queries); got < read*95/100 {
		t.Errorf("the flooders got %d answers to the %d queries the forwarder read", got, read)
	}
	if limit := int64(base + maxInflight + 32); peak.Load() > limit {
		t.Errorf("%d goroutines at the peak of the flood, want at most %d (%d before it, %d slots)", peak.Load(), limit, base, maxInflight)
	}
	if st := f.Stats(); st.Limited == 0 || st.Busy == 0 {
		t.Errorf("stats: %+v", st)
	}
	f.report()
	if log := logBuf.String(); strings.Count(log, "over the per-client limit") > 2*len(flooders)+1 ||
		!strings.Contains(log, "clients over the per-client limit answered REFUSED") {
		t.Errorf("the flood's log is not one line per client and a summary:\n%s", log)
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		_ = u.Close()
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			_ = l.Close()
			return uint16(p)
		}
	}
	t.Fatal("no free port on loopback")
	return 0
}

// ask sends one query for name from src and returns the first A record, or the rcode.
func ask(server, src, name string) (string, error) {
	m, err := exchange(server, src, name)
	if err != nil {
		return "", err
	}
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), nil
		}
	}
	return dns.RcodeToString[m.Rcode], nil
}

func rcodeOf(server, src, name string) (int, error) {
	m, err := exchange(server, src, name)
	if err != nil {
		return -1, err
	}
	return m.Rcode, nil
}

func exchange(server, src, name string) (*dns.Msg, error) {
	c := &dns.Client{Timeout: time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
	m, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), server)
	return m, err
}

// Clients asking the same name while it is being asked share the one upstream query.
func TestCoalesced(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		asked.Add(1)
		time.Sleep(300 * time.Millisecond) // a slow resolver: the others arrive meanwhile
		m := new(dns.Msg).SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A 192.0.2.80")
		m.Answer = []dns.RR{rr}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	defer func() { _ = srv.Shutdown() }()
	f := New(Options{LAN: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Fixed: []netip.AddrPort{pc.LocalAddr().(*net.UDPAddr).AddrPort()}})
	f.refresh()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := f.ServeMsg(new(dns.Msg).SetQuestion("Same.Example.", dns.TypeA), netip.MustParseAddr("127.0.0.2"), true)
			if len(m.Answer) == 1 && m.Question[0].Name == "Same.Example." {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 50 || asked.Load() != 1 {
		t.Fatalf("%d of 50 answered, the resolver asked %d times, want once (stats %+v)", ok.Load(), asked.Load(), f.Stats())
	}
}
