// Command bench-failover measures failover and failback in the namespace lab (root only).
//
// It runs the appliance in a lab's box with the default probe settings, a steady UDP stream
// from the office phone to the trunk and SIP OPTIONS from the PBX's port 5060, and makes the
// fixed line fail, N times each: its carrier goes (the ISP side is set down) or it goes silent
// (the ISP drops everything). Failover times are loss-derived (RFC 6412): packets of the
// stream lost across the fault divided by its rate. Then the primary is made noisy for -soak
// (random loss, a dead target, a rate-limiting one): every failover there is a false one,
// and the standby modem's bytes are metered at its ISP. Last, silent-line failovers are timed
// until the trunk's inbound INVITE, sent to where the PBX last registered from, reaches the
// PBX again. It prints one line per figure: `name p50=<n> p95=<n>` or `name=<n>`.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/officeedge/appliance/integration/benchstat"
	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/wan"
)

func main() {
	trials := flag.Int("trials", 10, "trials of each fault")
	rate := flag.Int("rate", 200, "packets per second of the steady UDP stream")
	stability := flag.Duration("stability", 5*time.Second, "failback stability period (default config: 60s; shorter keeps the run to minutes)")
	limit := flag.Duration("limit", 10*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "print every trial")
	var o soakOpts
	flag.DurationVar(&o.d, "soak", 2*time.Minute, "length of the noisy soak (the issue's figure: -soak 30m); 0 skips it")
	flag.IntVar(&o.loss, "soak-loss", 5, "percent of packets the primary's ISP drops at random, each way, during the soak")
	flag.IntVar(&o.icmpRate, "soak-icmp-limit", 1, "ICMP echo requests per second the rate-limiting target answers during the soak")
	var in inboundOpts
	flag.IntVar(&in.trials, "inbound-trials", 3, "silent-line failovers timed until the trunk's inbound INVITE reaches the PBX again; 0 skips them")
	flag.DurationVar(&in.register, "register", 30*time.Second, "registration interval of the lab PBX (it registers with the trunk from port 5062)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("bench-failover needs root (network namespaces, nftables, conntrack)")
	}
	if err := run(*trials, *rate, *stability, *limit, *verbose, o, in); err != nil {
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

func run(trials, rate int, stability, limit time.Duration, verbose bool, soak soakOpts, in inboundOpts) error {
	end := time.Now().Add(limit)
	// The office's traffic runs through the soak and the inbound trials too.
	limit += soak.d + time.Duration(in.trials)*(2*in.register+time.Minute)
	dir, bin, done, err := build.TempDaemon("bench-failover")
	if err != nil {
		return err
	}
	defer done()
	// Default probe settings; only the failback stability is shortened, and the hold-down
	// does not grow (each trial is a deliberate "flap").
	cfg := sitelab.Config(fmt.Sprintf("stability = %q", stability.String()), fmt.Sprintf("hold_down_max = %q", stability.String()))
	site, err := sitelab.Start(fmt.Sprintf("bf%d", os.Getpid()%100000), bin, dir, cfg)
	if err != nil {
		return err
	}
	defer site.Close()
	stream, err := sitelab.StartStream(site.Lab, rate, limit)
	if err != nil {
		return err
	}
	defer stream.Close()
	sip, err := sitelab.StartSIPPinger(site.Lab, 20*time.Millisecond, limit)
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
	pri, bak := sitelab.Addr[wan.Primary], sitelab.Addr[wan.Backup]
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
			if tsw, ok := sitelab.Event(st, "wan.failover", t0); ok {
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
	var soakLines []string
	if soak.d > 0 {
		soak.verbose = verbose
		if soakLines, err = runSoak(site, soak); err != nil {
			return err
		}
	}
	if in.trials > 0 {
		l, err := runInbound(site, in, stability, verbose)
		if err != nil {
			return err
		}
		soakLines = append(soakLines, l...)
	}
	if trials == 0 {
		fmt.Print(strings.Join(soakLines, ""))
		return nil
	}
	fmt.Printf("# %d trials of each fault, stream %d packets/s, default probe settings, failback stability %s\n", trials, rate, stability)
	fmt.Print(strings.Join(soakLines, ""))
	benchstat.Line("carrier_loss_failover_ms", f.failover["carrier_loss"], 0)
	benchstat.Line("silent_loss_failover_ms", f.failover["silent_loss"], 0)
	benchstat.Line("sip_flow_recovered_ms", append(append([]float64(nil), f.sip["carrier_loss"]...), f.sip["silent_loss"]...), 0)
	benchstat.Line("sip_flow_recovered_carrier_ms", f.sip["carrier_loss"], 0)
	benchstat.Line("sip_flow_recovered_silent_ms", f.sip["silent_loss"], 0)
	benchstat.Line("sip_flow_after_switch_ms", f.sipSwitch, 0)
	benchstat.Line("failback_after_recovery_s", f.failback, 1)
	fmt.Printf("stale_conntrack_after_failover max=%d\n", f.stale)
	return nil
}

func waitFlow(st *sitelab.Stream, addr string, after uint32, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for st.ArrivedFromSince(addr, after) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the stream did not arrive over %s within %s", addr, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func waitSIP(p *sitelab.SIPPinger, addr string, after time.Time, d time.Duration) (time.Time, error) {
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

type soakOpts struct {
	d        time.Duration
	loss     int
	icmpRate int
	verbose  bool // print the daemon's log lines about silences and verdicts
}

// runSoak runs the office on a noisy primary for o.d: random loss at its ISP, one probe
// target dead and one rate-limiting ICMP. Every failover is a false one. It also meters the
// standby modem's traffic (only probes cross it while the primary carries the office).
func runSoak(site *sitelab.Site, o soakOpts) ([]string, error) {
	st0, err := site.WaitStatus(20*time.Second, "on the primary", func(st wan.Status) bool { return st.Active == wan.Primary })
	if err != nil {
		return nil, err
	}
	before := sitelab.Uplink(st0, wan.Primary).Suspicions
	meter, err := site.StartMeter(wan.Backup)
	if err != nil {
		return nil, err
	}
	if err := site.Noise(wan.Primary, o.loss); err != nil {
		return nil, err
	}
	if err := site.TargetTrouble(true, o.icmpRate); err != nil {
		return nil, err
	}
	log0 := site.Log()
	t0 := time.Now()
	time.Sleep(o.d)
	elapsed := time.Since(t0)
	b, err := meter.Bytes()
	if err != nil {
		return nil, err
	}
	st, err := site.Status()
	if err != nil {
		return nil, err
	}
	_ = site.Noise(wan.Primary, 0)
	_ = site.TargetTrouble(false, 0)
	// The daemon's log, not the status (it keeps the last 100 events only).
	count := func(log string) (failovers, downs int) {
		for _, l := range strings.Split(log, "\n") {
			switch {
			case strings.Contains(l, "kind=wan.failover"):
				failovers++
			case strings.Contains(l, "kind=uplink.down") && strings.Contains(l, "uplink=primary"):
				downs++
			}
		}
		return
	}
	n0, d0 := count(log0)
	log := site.Log()
	n, downs := count(log)
	if o.verbose {
		for _, l := range strings.Split(log[min(len(log0), len(log)):], "\n") {
			if strings.Contains(l, "silence") || strings.Contains(l, "burst") || strings.Contains(l, "kind=uplink.") || strings.Contains(l, "kind=wan.failover") {
				fmt.Fprintln(os.Stderr, l)
			}
		}
	}
	n, downs = n-n0, downs-d0
	p := sitelab.Uplink(st, wan.Primary)
	month := float64(30*24*time.Hour) / float64(elapsed)
	return []string{
		fmt.Sprintf("# noisy soak %s: %d%% random loss each way at the primary's ISP, DNS target dead, ICMP target limited to %d/s; primary %s at the end (%s); %d silences cleared by a confirmation burst, %d primary-down verdicts\n",
			elapsed.Round(time.Second), o.loss, o.icmpRate, p.State, p.Reason, p.Suspicions-before, downs),
		fmt.Sprintf("false_failovers_noisy_soak=%d\n", n),
		fmt.Sprintf("standby_probe_mb_month=%.1f\n", float64(b)*month/1e6),
	}, nil
}

type inboundOpts struct {
	trials   int
	register time.Duration
}

// runInbound times, over silent-line failovers, how long the trunk's inbound calls miss the
// office: the trunk sends an INVITE every 100 ms to the address the PBX last registered from,
// and the clock runs from the failover to the first INVITE that reaches the PBX. The fault
// comes at a random point of the PBX's registration cycle.
func runInbound(site *sitelab.Site, o inboundOpts, stability time.Duration, verbose bool) ([]string, error) {
	pbx, err := sitelab.StartRegistrant(site.Lab, o.register)
	if err != nil {
		return nil, err
	}
	defer pbx.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for i := 0; ; i++ {
			_ = site.Trunk.Invite(i)
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	var got []float64
	pri := sitelab.Addr[wan.Primary]
	for i := range o.trials {
		deadline := time.Now().Add(o.register + 20*time.Second)
		for c := site.Trunk.Contact(); c == nil || c.IP.String() != pri; c = site.Trunk.Contact() {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("inbound trial %d: the PBX is not registered through the primary", i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := pbx.WaitInvite(time.Now(), 5*time.Second); err != nil {
			return nil, fmt.Errorf("inbound trial %d: before the fault: %w", i+1, err)
		}
		time.Sleep(rand.N(o.register))
		t0 := time.Now()
		if err := site.Silent(wan.Primary, true); err != nil {
			return nil, err
		}
		st, err := site.WaitStatus(20*time.Second, "failed over", func(st wan.Status) bool { return st.Active == wan.Backup })
		if err != nil {
			return nil, err
		}
		tf, ok := sitelab.Event(st, "wan.failover", t0)
		if !ok {
			return nil, fmt.Errorf("inbound trial %d: no failover event", i+1)
		}
		at, err := pbx.WaitInvite(tf, o.register+20*time.Second)
		if err != nil {
			return nil, fmt.Errorf("inbound trial %d: after the failover: %w", i+1, err)
		}
		got = append(got, at.Sub(tf).Seconds())
		if verbose {
			fmt.Fprintf(os.Stderr, "inbound trial %d: first inbound INVITE %.1f s after the failover\n", i+1, at.Sub(tf).Seconds())
		}
		if err := site.Silent(wan.Primary, false); err != nil {
			return nil, err
		}
		if _, err := site.WaitStatus(stability+30*time.Second, "failed back", func(st wan.Status) bool { return st.Active == wan.Primary }); err != nil {
			return nil, err
		}
	}
	vals := make([]string, len(got))
	for i, v := range got {
		vals[i] = fmt.Sprintf("%.1f", v)
	}
	return []string{
		fmt.Sprintf("# inbound calls after a failover: the PBX registers every %s; seconds from each failover to the first inbound INVITE at the PBX: %s (worst below)\n", o.register, strings.Join(vals, ", ")),
		fmt.Sprintf("inbound_call_after_failover_s=%.1f\n", benchstat.Pct(got, 100)),
	}, nil
}
