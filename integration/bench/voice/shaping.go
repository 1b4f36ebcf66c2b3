package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/officeedge/appliance/integration/benchstat"
	"github.com/officeedge/appliance/integration/shaperlab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/shaper"
)

// goalSlack is the goal: loaded p99 within 20 ms of idle; autorate's recovery is
// timed to it.
const goalSlack = 20 * time.Millisecond

func benchShaping(o opts) error {
	l, err := lab.New(fmt.Sprintf("bv%d", os.Getpid()%100000))
	if err != nil {
		return err
	}
	defer l.Close()
	s, _, err := shaperlab.New(l, shaperlab.Config("4Mbit"))
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Bottleneck("4mbit"); err != nil {
		return err
	}
	v, err := s.StartVoice(42000)
	if err != nil {
		return err
	}
	defer v.Close()
	time.Sleep(2 * time.Second) // the first packets wait for the neighbours to be found
	t0 := time.Now()
	time.Sleep(5 * time.Second)
	idle := shaperlab.Percentile(v.Delays(t0, time.Now()), 99)
	if idle == 0 {
		return errors.New("the call's media did not reach the trunk")
	}

	loaded := func(port int) (time.Duration, float64, error) {
		u, err := s.StartUpload(port, 4, o.load)
		if err != nil {
			return 0, 0, err
		}
		from := time.Now().Add(3 * time.Second) // the queues have filled
		bps, err := u.Wait()
		return shaperlab.Percentile(v.Delays(from, time.Now()), 99), bps, err
	}
	unshaped, _, err := loaded(42001)
	if err != nil {
		return err
	}
	stop, sh, err := runShaper(s, shaper.Options{Links: []shaper.Link{{Name: "FTTC", Interface: lab.BoxWANIf, Rate: 4_000_000}}})
	if err != nil {
		return err
	}
	shapedP99, bps, err := loaded(42002)
	stop()
	if err != nil {
		return err
	}
	_ = sh
	fmt.Printf("voice_delay_ms idle_p99=%s loaded_p99=%s unshaped_loaded_p99=%s\n", shaperlab.Ms(idle), shaperlab.Ms(shapedP99), shaperlab.Ms(unshaped))
	fmt.Printf("bulk_share_pct %.1f\n", bps/4e6*100)

	var rec []float64
	for i := range o.trials {
		d, err := autorateTrial(s, v, idle, 42010+2*i)
		if err != nil {
			return fmt.Errorf("autorate trial %d: %w", i+1, err)
		}
		rec = append(rec, d.Seconds())
	}
	if len(rec) > 0 {
		fmt.Printf("autorate_recovery_s p50=%.1f max=%.1f trials=%d\n", benchstat.Pct(rec, 50), benchstat.Pct(rec, 100), len(rec))
	}
	return cpuFigures(s, o.cpuLoad)
}

// runShaper runs a shaper on the box until stop.
func runShaper(s *shaperlab.Site, o shaper.Options) (stop func(), sh *shaper.Shaper, err error) {
	o.NetNS = int(s.BoxNS)
	sh = shaper.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	stop = func() { cancel(); <-done }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st := sh.Status(); len(st) == 1 && st[0].Applied {
			return stop, sh, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("the shaper's tree did not appear: %+v", sh.Status())
		}
	}
}

// autorateTrial times the call's recovery after an autorated line under a full upload falls
// from 8 to 2 Mbit/s: from the drop until a second of the call's packets has its p99 within
// goalSlack of idle again.
func autorateTrial(s *shaperlab.Site, v *shaperlab.Voice, idle time.Duration, port int) (time.Duration, error) {
	if err := s.Bottleneck("8mbit"); err != nil {
		return 0, err
	}
	p, err := s.StartPinger()
	if err != nil {
		return 0, err
	}
	defer p.Close()
	stop, sh, err := runShaper(s, shaper.Options{Links: []shaper.Link{{Name: "FTTC", Interface: lab.BoxWANIf, Auto: true, Min: 1_000_000, Max: 10_000_000}}, RTT: p.RTT})
	if err != nil {
		return 0, err
	}
	defer stop()
	u, err := s.StartUpload(port, 4, 90*time.Second)
	if err != nil {
		return 0, err
	}
	defer u.Stop()
	good := func(slack time.Duration) bool {
		now := time.Now()
		ds := v.Delays(now.Add(-time.Second), now)
		return len(ds) >= 30 && shaperlab.Percentile(ds, 99) <= idle+slack
	}
	if err := waitUntil(30*time.Second, func() bool { return sh.Status()[0].Line < 8_000_000 && good(goalSlack) }); err != nil {
		return 0, fmt.Errorf("settling on the 8 Mbit/s line: %w (%+v)", err, sh.Status())
	}
	if err := s.Bottleneck("2mbit"); err != nil {
		return 0, err
	}
	drop := time.Now()
	// A window that starts after the drop: the delay before it says nothing.
	err = waitUntil(60*time.Second, func() bool { return time.Since(drop) > time.Second && good(goalSlack) })
	took := time.Since(drop)
	if err != nil {
		return 0, fmt.Errorf("the call's delay did not recover: %w (%+v)", err, sh.Status())
	}
	return took, nil
}

func waitUntil(d time.Duration, cond func() bool) error {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
	}
	return nil
}

// cpuFigures is the CPU the traffic costs while 90 Mbit/s of upload go through the box,
// without the shaper and with it shaping a 100 Mbit/s line. The lab's links are veth pairs:
// the forwarding (the box's nftables, HTB, the ISP's TBF) runs in softirq on the sending
// side's CPU, charged to the process there (tick accounting) or to ksoftirqd. So it is the
// CPU time of iperf3 (client and server) and of ksoftirqd, in percent of one core: the
// machine's own busy share says nothing on a machine shared with other work.
func cpuFigures(s *shaperlab.Site, d time.Duration) error {
	if err := s.Bottleneck("100mbit"); err != nil {
		return err
	}
	measure := func(port int) (float64, float64, error) {
		u, err := s.StartUpload(port, 1, d+2*time.Second, "-b", "90M")
		if err != nil {
			return 0, 0, err
		}
		time.Sleep(time.Second) // past the start
		pids := append(u.Pids(), softirqds()...)
		a, t0 := ticks(pids), time.Now()
		time.Sleep(d)
		b, t1 := ticks(pids), time.Now()
		bps, err := u.Wait()
		return float64(b-a) / clkTck / t1.Sub(t0).Seconds() * 100, bps, err
	}
	unshaped, _, err := measure(42030)
	if err != nil {
		return err
	}
	stop, _, err := runShaper(s, shaper.Options{Links: []shaper.Link{{Name: "FTTC", Interface: lab.BoxWANIf, Rate: 100_000_000}}})
	if err != nil {
		return err
	}
	shaped, bps, err := measure(42031)
	stop()
	if err != nil {
		return err
	}
	fmt.Printf("shaper_cpu_pct_at_line_rate shaped=%.1f unshaped=%.1f mbit=%.0f unit=pct_of_one_core\n", shaped, unshaped, bps/1e6)
	return nil
}

// clkTck is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux).
const clkTck = 100

// ticks sums utime and stime of pids (gone ones count nothing).
func ticks(pids []int) uint64 {
	var n uint64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b)[i+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseUint(f[11], 10, 64)
		sy, _ := strconv.ParseUint(f[12], 10, 64)
		n += u + sy
	}
	return n
}

// softirqds are the ksoftirqd threads' pids.
func softirqds() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.HasPrefix(string(c), "ksoftirqd/") {
			out = append(out, pid)
		}
	}
	return out
}
