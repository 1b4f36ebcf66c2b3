// Command bench-dns measures the office's DNS in the namespace lab (root only): its capacity beside dnsmasq's, and how soon it answers again after a failover.
//
// Capacity: dnsperf from the phone against the forwarder and against dnsmasq running in
// the same box, both forwarding to the FTTC line's unbound, with the same query files:
// cache hits (200 names asked over and over) and misses (names asked once), best of
// -rounds runs of -secs seconds each; then, with the default per-client limit, a flood
// from one client past it, to see that it is answered (REFUSED), not dropped. Needs dnsperf
// and dnsmasq. Prints `dns_qps_hits forwarder=<n> dnsmasq=<n>`, `dns_qps_misses ...`,
// `dns_latency_ms_hits p50=<n> p95=<n>` (the forwarder's, at 10,000 queries a second;
// dnsmasq's on a line of its own), `dns_overlimit_answered_pct <n>` and
// `dns_overlimit_refused_pct <n>`.
//
// Failover: it runs the appliance in a lab's box with a real resolver at each ISP (unbound,
// each answering its own customers only), queries the box from the phone every 10 ms, and makes
// the fixed line fail N times each way (carrier lost, line silent). For each failover it
// takes the time from wan's switch to the first answer from the LTE resolver, and from the
// fault itself. It prints `name p50=<n> p95=<n>` lines.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/officeedge/appliance/integration/benchstat"
	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/integration/dnslab"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/wan"
)

func main() {
	trials := flag.Int("trials", 10, "failovers of each kind (carrier, silent)")
	limit := flag.Duration("limit", 10*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "print every trial")
	secs := flag.Int("secs", 8, "seconds of each dnsperf capacity run")
	rounds := flag.Int("rounds", 2, "capacity runs of each kind and server (the best counts)")
	flood := flag.Int("flood", 20000, "queries a second of the over-limit flood")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("bench-dns needs root (network namespaces, nftables)")
	}
	if err := run(*trials, *limit, *verbose, *secs, *rounds, *flood); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-dns:", msg)
	os.Exit(1)
}

func run(trials int, limit time.Duration, verbose bool, secs, rounds, flood int) error {
	end := time.Now().Add(limit)
	dir, bin, done, err := build.TempDaemon("bench-dns")
	if err != nil {
		return err
	}
	defer done()
	cfg := dnslab.Config(`stability = "2s"`, `hold_down_max = "2s"`)
	s, err := sitelab.Start(fmt.Sprintf("bd%04x", os.Getpid()&0xffff), bin, dir, liftLimits(cfg), dnslab.Resolvers(dir))
	if err != nil {
		return err
	}
	defer s.Close()
	if secs > 0 && rounds > 0 {
		if err := capacity(s, dir, secs, rounds); err != nil {
			return fmt.Errorf("capacity: %w\ndaemon log:\n%s", err, tailLines(s.Log(), 30))
		}
	}
	// From here on the default limits, as an office has them.
	if err := os.WriteFile(filepath.Join(dir, "appliance.toml"), cfg, 0o600); err != nil {
		return err
	}
	if err := s.Restart(); err != nil {
		return err
	}
	if err := await(s.Lab, dnslab.FTTCAnswer, end); err != nil {
		return err
	}
	if flood > 0 {
		if err := overLimit(s.Lab, dir, flood); err != nil {
			return fmt.Errorf("over the limit: %w", err)
		}
	}
	var after, outage []float64
	for i := 0; i < 2*trials; i++ {
		if time.Now().After(end) {
			return fmt.Errorf("gave up after %s with %d trials done", limit, i)
		}
		kind := []string{"carrier", "silent"}[i%2]
		a, o, err := trial(s, kind, end)
		if err != nil {
			return fmt.Errorf("trial %d (%s): %w\ndaemon log:\n%s", i+1, kind, err, s.Log())
		}
		if verbose {
			fmt.Printf("trial %d %s: dns answered %.1f ms after the switch, %.1f ms after the fault\n", i+1, kind, a, o)
		}
		after, outage = append(after, a), append(outage, o)
	}
	if len(after) > 0 {
		fmt.Printf("dns_after_failover_ms p50=%.1f p95=%.1f\n", benchstat.Pct(after, 50), benchstat.Pct(after, 95))
		fmt.Printf("dns_outage_from_fault_ms p50=%.1f p95=%.1f\n", benchstat.Pct(outage, 50), benchstat.Pct(outage, 95))
	}
	return nil
}

// trial fails the fixed line, measures, and brings it back (waiting for the failback and
// for FTTC's answers again).
func trial(s *sitelab.Site, kind string, end time.Time) (afterSwitch, afterFault float64, err error) {
	fault := func(on bool) error {
		if kind == "carrier" {
			return s.Carrier(wan.Primary, !on)
		}
		return s.Silent(wan.Primary, on)
	}
	if err := await(s.Lab, dnslab.FTTCAnswer, end); err != nil {
		return 0, 0, fmt.Errorf("before the fault: %w", err)
	}
	q := startQuerier(s.Lab)
	faultAt := time.Now()
	if err := fault(true); err != nil {
		q.stop()
		return 0, 0, err
	}
	st, err := s.WaitStatus(20*time.Second, "failed over", func(st wan.Status) bool { return st.Active == wan.Backup })
	if err != nil {
		q.stop()
		return 0, 0, err
	}
	switchAt, ok := sitelab.Event(st, "wan.failover", faultAt)
	first, got := q.first(dnslab.LTEAnswer, 10*time.Second)
	q.stop()
	if err := fault(false); err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, errors.New("no wan.failover event")
	}
	if !got {
		return 0, 0, errors.New("no answer from the LTE resolver within 10s of the switch")
	}
	if _, err := s.WaitStatus(30*time.Second, "failed back", func(st wan.Status) bool { return st.Active == wan.Primary }); err != nil {
		return 0, 0, err
	}
	return ms(first.Sub(switchAt)), ms(first.Sub(faultAt)), nil
}

// await asks until the answer is want.
func await(l *lab.Lab, want string, end time.Time) error {
	for time.Now().Before(end) {
		if a, _, err := ask(l); err == nil && a == want {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no answer %s", want)
}

// ask sends one query for dnslab.Name from the phone, with a fresh socket.
func ask(l *lab.Lab) (string, time.Time, error) {
	conn, err := l.DialUDP(lab.HostPhone, "", lab.BoxLAN4+":53")
	if err != nil {
		return "", time.Time{}, err
	}
	defer conn.Close()
	c := &dns.Client{Timeout: 2 * time.Second}
	m, _, err := c.ExchangeWithConn(new(dns.Msg).SetQuestion(dns.Fqdn(dnslab.Name), dns.TypeA), &dns.Conn{Conn: conn})
	at := time.Now()
	if err != nil {
		return "", at, err
	}
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), at, nil
		}
	}
	return dns.RcodeToString[m.Rcode], at, nil
}

// querier asks every 10 ms, each query on its own, and keeps when each answer came.
type querier struct {
	mu      sync.Mutex
	answers map[string][]time.Time
	done    chan struct{}
	wg      sync.WaitGroup
}

func startQuerier(l *lab.Lab) *querier {
	q := &querier{answers: map[string][]time.Time{}, done: make(chan struct{})}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-q.done:
				return
			case <-tick.C:
			}
			q.wg.Add(1)
			go func() {
				defer q.wg.Done()
				if a, at, err := ask(l); err == nil {
					q.mu.Lock()
					q.answers[a] = append(q.answers[a], at)
					q.mu.Unlock()
				}
			}()
		}
	}()
	return q
}

// first is the earliest time answer came, waiting up to d for it.
func (q *querier) first(answer string, d time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		q.mu.Lock()
		ts := append([]time.Time(nil), q.answers[answer]...)
		q.mu.Unlock()
		if len(ts) > 0 {
			sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
			return ts[0], true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Time{}, false
}

func (q *querier) stop() { close(q.done); q.wg.Wait() }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
