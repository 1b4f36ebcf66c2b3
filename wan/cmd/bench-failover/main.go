// Command bench-failover measures failover and failback in the namespace lab (root only).
//
// It runs the appliance in a lab's box with the default probe settings, a steady UDP stream
// from the office phone to the trunk and SIP OPTIONS from the PBX's port 5060, and makes the
// fixed line fail, N times each: its carrier goes (the ISP side is set down) or it goes silent
// (the ISP drops everything). Failover times are loss-derived (RFC 6412): packets of the
// stream lost across the fault divided by its rate. It prints one line per figure:
// `name p50=<n> p95=<n>`.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/officeedge/appliance/wan"
	"github.com/officeedge/appliance/wan/wanlab"
)

func main() {
	trials := flag.Int("trials", 10, "trials of each fault")
	rate := flag.Int("rate", 200, "packets per second of the steady UDP stream")
	stability := flag.Duration("stability", 5*time.Second, "failback stability period (default config: 60s; shorter keeps the run to minutes)")
	limit := flag.Duration("limit", 10*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "print every trial")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("bench-failover needs root (network namespaces, nftables, conntrack)")
	}
	if err := run(*trials, *rate, *stability, *limit, *verbose); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-failover:", msg)
	os.Exit(1)
}

type figures struct {
	failover  map[string][]float64 // ms, by fault
	sip       map[string][]float64 // ms from the fault
	sipSwitch []float64            // ms from the switch
	failback  []float64            // s from the line's recovery
	stale     int
}

func run(trials, rate int, stability, limit time.Duration, verbose bool) error {
	end := time.Now().Add(limit)
	dir, err := os.MkdirTemp("", "bench-failover")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := wanlab.BuildDaemon(dir)
	if err != nil {
		return err
	}
	// Default probe settings; only the failback stability is shortened, and the hold-down
	// does not grow (each trial is a deliberate "flap").
	cfg := wanlab.Config(fmt.Sprintf("stability = %q", stability.String()), fmt.Sprintf("hold_down_max = %q", stability.String()))
	site, err := wanlab.Start(fmt.Sprintf("bf%d", os.Getpid()%100000), bin, dir, cfg)
	if err != nil {
		return err
	}
	defer site.Close()
	stream, err := wanlab.StartStream(site.Lab, rate, limit)
	if err != nil {
		return err
	}
	defer stream.Close()
	sip, err := wanlab.StartSIPPinger(site.Lab, 20*time.Millisecond, limit)
	if err != nil {
		return err
	}
	defer sip.Close()

	f := figures{failover: map[string][]float64{}, sip: map[string][]float64{}}
	faults := []struct {
		name string
		set  func(bool) error
	}{
		{"carrier_loss", func(broken bool) error { return site.Carrier(wan.Primary, !broken) }},
		{"silent_loss", func(broken bool) error { return site.Silent(wan.Primary, broken) }},
	}
	pri, bak := wanlab.Addr[wan.Primary], wanlab.Addr[wan.Backup]
	for i := range trials {
		for _, fault := range faults {
			if time.Now().After(end) {
				return fmt.Errorf("time limit %s reached", limit)
			}
			// Steady on the primary.
			if err := waitFlow(stream, pri, stream.Sent(), 20, 20*time.Second); err != nil {
				return fmt.Errorf("%s trial %d: before: %w", fault.name, i+1, err)
			}
			seq0, t0 := stream.Sent(), time.Now()
			if err := fault.set(true); err != nil {
				return err
			}
			st, err := site.WaitStatus(20*time.Second, "failed over", func(st wan.Status) bool { return st.Active == wan.Backup })
			if err != nil {
				return fmt.Errorf("%s trial %d: %w", fault.name, i+1, err)
			}
			if err := waitFlow(stream, bak, seq0, 20, 10*time.Second); err != nil {
				return fmt.Errorf("%s trial %d: %w", fault.name, i+1, err)
			}
			tsip, err := waitSIP(sip, bak, t0, 10*time.Second)
			if err != nil {
				return fmt.Errorf("%s trial %d: %w", fault.name, i+1, err)
			}
			time.Sleep(300 * time.Millisecond) // let the tail of the stream arrive
			lost := stream.Lost(seq0, stream.Sent()-uint32(rate/10))
			ms := float64(lost) * 1000 / float64(rate)
			f.failover[fault.name] = append(f.failover[fault.name], ms)
			f.sip[fault.name] = append(f.sip[fault.name], float64(tsip.Sub(t0).Milliseconds()))
			if tsw, ok := wanlab.Event(st, "wan.failover", t0); ok {
				f.sipSwitch = append(f.sipSwitch, float64(tsip.Sub(tsw).Milliseconds()))
			}
			n, stale, err := site.StaleFlows(pri)
			if err != nil {
				return err
			}
			if n > f.stale {
				f.stale = n
				fmt.Fprintf(os.Stderr, "stale entries after %s trial %d:\n%s", fault.name, i+1, stale)
			}

			// The line comes back: measure the failback.
			seq1, t1 := stream.Sent(), time.Now()
			if err := fault.set(false); err != nil {
				return err
			}
			if err := waitFlow(stream, pri, seq1, 1, stability+30*time.Second); err != nil {
				return fmt.Errorf("%s trial %d: failback: %w", fault.name, i+1, err)
			}
			fb := time.Since(t1).Seconds()
			f.failback = append(f.failback, fb)
			if _, err := waitSIP(sip, pri, t1, 10*time.Second); err != nil {
				return fmt.Errorf("%s trial %d: failback: %w", fault.name, i+1, err)
			}
			if n, stale, err := site.StaleFlows(bak); err != nil {
				return err
			} else if n > f.stale {
				f.stale = n
				fmt.Fprintf(os.Stderr, "stale entries after %s failback %d:\n%s", fault.name, i+1, stale)
			}
			if verbose {
				fmt.Fprintf(os.Stderr, "%s trial %d: failover %.0f ms (lost %d), SIP back %s after the fault, failback %.1f s after recovery\n",
					fault.name, i+1, ms, lost, tsip.Sub(t0).Round(time.Millisecond), fb)
			}
		}
	}
	fmt.Printf("# %d trials of each fault, stream %d packets/s, default probe settings, failback stability %s\n", trials, rate, stability)
	line("carrier_loss_failover_ms", f.failover["carrier_loss"], 0)
	line("silent_loss_failover_ms", f.failover["silent_loss"], 0)
	line("sip_flow_recovered_ms", append(append([]float64(nil), f.sip["carrier_loss"]...), f.sip["silent_loss"]...), 0)
	line("sip_flow_recovered_carrier_ms", f.sip["carrier_loss"], 0)
	line("sip_flow_recovered_silent_ms", f.sip["silent_loss"], 0)
	line("sip_flow_after_switch_ms", f.sipSwitch, 0)
	line("failback_after_recovery_s", f.failback, 1)
	fmt.Printf("stale_conntrack_after_failover max=%d\n", f.stale)
	return nil
}

func line(name string, v []float64, decimals int) {
	fmt.Printf("%s p50=%s p95=%s\n", name, format(pct(v, 50), decimals), format(pct(v, 95), decimals))
}

func format(x float64, decimals int) string {
	return strings.TrimSpace(fmt.Sprintf("%.*f", decimals, x))
}

// pct is the nearest-rank percentile.
func pct(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	k := (p*len(s) + 99) / 100
	return s[max(k-1, 0)]
}

func waitFlow(st *wanlab.Stream, addr string, after uint32, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for st.ArrivedFromSince(addr, after) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the stream did not arrive over %s within %s", addr, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func waitSIP(p *wanlab.SIPPinger, addr string, after time.Time, d time.Duration) (time.Time, error) {
	deadline := time.Now().Add(d)
	for {
		if t, ok := p.FirstFrom(addr, after); ok {
			return t, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no SIP answer over %s within %s", addr, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
