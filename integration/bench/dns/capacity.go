package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/officeedge/appliance/integration/benchstat"
	"github.com/officeedge/appliance/integration/dnslab"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
)

// The capacity runs: dnsperf from the phone against the box's forwarder (port 53) and
// against dnsmasq in the same box (port 5353), both forwarding to the FTTC line's unbound,
// with the same query files.

const dnsmasqPort = "5353"

// liftLimits is the [dns] the capacity runs use: no per-client limit in the way of one
// dnsperf client.
func liftLimits(cfg []byte) []byte {
	return []byte(strings.Replace(string(cfg), "[dns]\n", "[dns]\nrate_limit = 100000\nrate_burst = 1000000\ncache_size = 100000\n", 1))
}

// startDnsmasq runs dnsmasq in the box on the LAN address, port 5353, forwarding to the
// FTTC resolver only, with a cache as big as the forwarder's and as many queries in flight
// as it allows.
func startDnsmasq(l *lab.Lab, dir string) error {
	cmd, err := l.Start(lab.HostBox, "dnsmasq", "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
		"--server="+dnslab.FTTCResolver, "--listen-address="+lab.BoxLAN4, "--port="+dnsmasqPort, "--bind-interfaces",
		"--cache-size=10000", "--dns-forward-max=512", "--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--user=root")
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if out, err := dnslab.Dig(l, lab.HostPhone, lab.BoxLAN4, "-p", dnsmasqPort, dnslab.Name); err == nil && out == dnslab.FTTCAnswer {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dnsmasq does not answer:\n%s", l.Output(cmd))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// perf is what one dnsperf run says.
type perf struct {
	sent, completed int
	qps             float64
	latMs           []float64 // each answer's latency with -v
	out             string
}

var (
	reSent      = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reQPS       = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
)

// dnsperf runs dnsperf from the phone against port with the queries in file.
func dnsperf(l *lab.Lab, port, file string, verbose bool, extra ...string) (perf, error) {
	args := append([]string{"dnsperf", "-s", lab.BoxLAN4, "-p", port, "-d", file, "-c", "4", "-T", "1", "-q", "200", "-t", "2"}, extra...)
	if verbose {
		args = append(args, "-v")
	}
	out, err := l.Run(lab.HostPhone, args...)
	p := perf{out: out}
	if err != nil {
		return p, fmt.Errorf("dnsperf: %w: %s", err, tailLines(out, 20))
	}
	num := func(re *regexp.Regexp) float64 {
		if m := re.FindStringSubmatch(out); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			return v
		}
		return -1
	}
	p.sent, p.completed, p.qps = int(num(reSent)), int(num(reCompleted)), num(reQPS)
	if p.qps < 0 {
		return p, fmt.Errorf("dnsperf said no rate: %s", tailLines(out, 20))
	}
	if verbose {
		// "> NOERROR name A 0.000123": the last field is the latency in seconds.
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == ">" {
				if s, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
					p.latMs = append(p.latMs, s*1000)
				}
			}
		}
	}
	return p, nil
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// writeQueries writes n query lines to a file in dir: names prefix<i>.bench.example, each
// repeated rep times (rep 1: every name once, all misses).
func writeQueries(dir, name, prefix string, n, rep int) (string, error) {
	var b strings.Builder
	for r := 0; r < rep; r++ {
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "%s%d.%s A\n", prefix, i, dnslab.BenchZone)
		}
	}
	f := filepath.Join(dir, name)
	return f, os.WriteFile(f, []byte(b.String()), 0o644)
}

// capacity measures hits and misses on both servers, best of rounds runs each
// (alternating, so that load from elsewhere on the machine falls on both alike).
func capacity(s *sitelab.Site, dir string, secs, rounds int) error {
	l := s.Lab
	if err := startDnsmasq(l, dir); err != nil {
		return err
	}
	hits, err := writeQueries(dir, "hits", "h", 200, 1)
	if err != nil {
		return err
	}
	// Warm both caches with every hit name.
	for _, port := range []string{"53", dnsmasqPort} {
		if _, err := dnsperf(l, port, hits, false, "-n", "1"); err != nil {
			return err
		}
	}
	dur := strconv.Itoa(secs)
	best := map[string]float64{}
	for r := 0; r < rounds; r++ {
		for _, port := range []string{"53", dnsmasqPort} {
			p, err := dnsperf(l, port, hits, false, "-l", dur)
			if err != nil {
				return err
			}
			best["hits"+port] = max(best["hits"+port], p.qps)
		}
	}
	fmt.Printf("dns_qps_hits forwarder=%.0f dnsmasq=%.0f\n", best["hits53"], best["hits"+dnsmasqPort])
	// Latency of hits under a busy office's load (10,000 queries a second), each answer
	// timed (dnsperf -v): the time a query waits, not dnsperf's own queue at full speed.
	lat := map[string][]float64{}
	for _, port := range []string{"53", dnsmasqPort} {
		p, err := dnsperf(l, port, hits, true, "-l", "3", "-Q", "10000")
		if err != nil {
			return err
		}
		lat[port] = p.latMs
	}
	fmt.Printf("dns_latency_ms_hits p50=%.3f p95=%.3f\n", benchstat.Pct(lat["53"], 50), benchstat.Pct(lat["53"], 95))
	fmt.Printf("dns_latency_ms_hits_dnsmasq p50=%.3f p95=%.3f\n", benchstat.Pct(lat[dnsmasqPort], 50), benchstat.Pct(lat[dnsmasqPort], 95))
	// Misses: names nobody asked before (a file of its own per run), once each.
	n := 0
	for r := 0; r < rounds; r++ {
		for _, port := range []string{"53", dnsmasqPort} {
			n++
			misses, err := writeQueries(dir, "misses", fmt.Sprintf("m%dx", n), 60000*secs, 1)
			if err != nil {
				return err
			}
			p, err := dnsperf(l, port, misses, false, "-l", dur, "-n", "1")
			if err != nil {
				return err
			}
			best["misses"+port] = max(best["misses"+port], p.qps)
		}
	}
	fmt.Printf("dns_qps_misses forwarder=%.0f dnsmasq=%.0f\n", best["misses53"], best["misses"+dnsmasqPort])
	return nil
}

// overLimit floods the forwarder from one client at rate queries a second, past the
// default per-client limit, and says how many queries were answered at all (REFUSED is an
// answer: a dropped query is a 5 s wait).
func overLimit(l *lab.Lab, dir string, rate int) error {
	hits, err := writeQueries(dir, "hits", "h", 200, 1)
	if err != nil {
		return err
	}
	p, err := dnsperf(l, "53", hits, false, "-l", "5", "-Q", strconv.Itoa(rate))
	if err != nil {
		return err
	}
	if p.sent <= 0 {
		return fmt.Errorf("dnsperf sent nothing: %s", tailLines(p.out, 20))
	}
	refused := 0
	if m := regexp.MustCompile(`REFUSED (\d+)`).FindStringSubmatch(p.out); m != nil {
		refused, _ = strconv.Atoi(m[1])
	}
	fmt.Printf("dns_overlimit_answered_pct %.1f\n", 100*float64(p.completed)/float64(p.sent))
	fmt.Printf("dns_overlimit_refused_pct %.1f\n", 100*float64(refused)/float64(p.sent))
	return nil
}
