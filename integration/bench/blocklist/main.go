// Command bench-blocklist measures the kernel owner with a community list of 500,000
// addresses and 10,000 networks, in a network namespace of its own (root only): the first
// apply, a reload, a restart on a kernel that kept the table and on one that lost it, a feed
// refresh, and one block's latency with it all present; then the real daemon in the
// namespace lab with the list as a community list file: its start, a reload, a block through
// its control API, its memory, and its first two minutes after kill -9 and a restart. It prints `name value` and `name p50=… p95=…` lines.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/netcfg"
)

func main() {
	addrs := flag.Int("addrs", 500000, "addresses in the community list")
	nets := flag.Int("nets", 10000, "networks in the community list")
	blocks := flag.Int("blocks", 1000, "single blocks timed with the list present")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("bench-blocklist needs root (network namespaces, nftables)")
	}
	if err := run(*addrs, *nets, *blocks); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-blocklist:", msg)
	os.Exit(1)
}

func namespace(name string) (int, func(), error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return 0, nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		return 0, nil, err
	}
	return int(h), func() { h.Close(); _ = exec.Command("ip", "netns", "del", name).Run() }, nil
}

type owner struct {
	*netcfg.Owner
	stop func()
}

func start(fd int, dir string, cfg *config.Config) (*owner, time.Duration, error) {
	t0 := time.Now()
	w, err := netcfg.NewOwner(netcfg.OwnerOptions{Firewall: netcfg.New(fd), StateDir: dir})
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	o := &owner{w, func() { cancel(); <-done }}
	if err := w.SetConfig(cfg); err != nil {
		o.stop()
		return nil, 0, err
	}
	return o, time.Since(t0), nil
}

func run(nAddrs, nNets, nBlocks int) error {
	cfg, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-blocklist-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	prefix := fmt.Sprintf("bbl%d", os.Getpid())
	fd, del, err := namespace(prefix + "-a")
	if err != nil {
		return err
	}
	defer del()
	list := lab.Blocklist(nAddrs, nNets)
	want := nAddrs + nNets

	// First apply: the ruleset on an empty kernel, then the whole list.
	o, tCfg, err := start(fd, dir, cfg)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := o.SetFeed("community", list, 3*time.Hour); err != nil {
		return err
	}
	tFeed := time.Since(t0)
	if err := kernelHas(fd, o, list, want); err != nil {
		return err
	}
	fmt.Printf("first_apply_s %.2f\n", (tCfg + tFeed).Seconds())

	t0 = time.Now()
	if err := o.SetConfig(cfg); err != nil {
		return err
	}
	fmt.Printf("reload_ms %.1f\n", ms(time.Since(t0)))

	// A refresh that changes 1% of the list.
	next := slices.Clone(list)
	for i := 0; i < len(next)/100; i++ {
		next[i*100] = netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	t0 = time.Now()
	if _, err := o.SetFeed("community", next, 3*time.Hour); err != nil {
		return err
	}
	fmt.Printf("feed_refresh_1pct_ms %.1f\n", ms(time.Since(t0)))
	t0 = time.Now()
	if _, err := o.SetFeed("community", next, 3*time.Hour); err != nil {
		return err
	}
	fmt.Printf("feed_refresh_same_ms %.1f\n", ms(time.Since(t0)))

	var lat []time.Duration
	for i := range nBlocks {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), 32)
		t0 := time.Now()
		if _, err := o.Block(netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceSIPGuard, By: "bench", Reason: "bench", For: time.Hour}); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	fmt.Printf("block_ms %s\n", pct(lat))

	// 100k claims of their own (a fleet's CrowdSec decisions, a long attack's verdicts): a
	// block must not cost a rebuild of the whole list.
	var claims []netcfg.BlockRequest
	for i := range 100000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 80 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
		claims = append(claims, netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceCrowdSec, By: "bench", Reason: "bench", For: time.Hour})
	}
	t0 = time.Now()
	for _, err := range o.BlockAll(claims) {
		if err != nil {
			return err
		}
	}
	fmt.Printf("claims_100k_batch_ms %.1f\n", ms(time.Since(t0)))
	lat = lat[:0]
	for i := range nBlocks {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)}), 32)
		t0 := time.Now()
		if _, err := o.Block(netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceSIPGuard, By: "bench", Reason: "bench", For: time.Hour}); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	fmt.Printf("block_with_100k_claims_ms %s\n", pct(lat))
	runtime.GC()
	fmt.Printf("owner_heap_mb %.1f\n", heapMB())
	fmt.Printf("process_rss_mb %.1f\n", rssMB())
	o.stop()

	// Restart on the same kernel (a daemon crash or update): the sets are still there.
	o, tRestart, err := start(fd, dir, cfg)
	if err != nil {
		return err
	}
	if err := kernelHas(fd, o, next, want+2*nBlocks+100000); err != nil {
		return err
	}
	fmt.Printf("restart_kept_kernel_s %.2f\n", tRestart.Seconds())
	o.stop()

	// Restart on a kernel without the table (a reboot): everything is written again.
	fd2, del2, err := namespace(prefix + "-b")
	if err != nil {
		return err
	}
	defer del2()
	o, tFresh, err := start(fd2, dir, cfg)
	if err != nil {
		return err
	}
	if err := kernelHas(fd2, o, next, want+2*nBlocks+100000); err != nil {
		return err
	}
	fmt.Printf("restart_empty_kernel_s %.2f\n", tFresh.Seconds())
	o.stop()
	return runDaemon(list, nBlocks)
}

// runDaemon measures the real daemon in the namespace lab with the list as a community
// list file: its start until the list is in the kernel, a reload, a block through the
// control API, and its memory.
func runDaemon(list []netip.Prefix, nBlocks int) error {
	dir, bin, done, err := build.TempDaemon("bench-blocklist-daemon-")
	if err != nil {
		return err
	}
	defer done()
	var b strings.Builder
	for _, p := range list {
		b.WriteString(p.String() + "\n")
	}
	feed := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(feed, []byte(b.String()), 0o600); err != nil {
		return err
	}
	cfg := string(sitelab.Config()) + "\n[[sipguard.feed]]\nname = \"big\"\nfile = \"" + feed + "\"\nformat = \"text\"\ninterval = \"1h\"\n"
	t0 := time.Now()
	s, err := sitelab.Start(fmt.Sprintf("bbd%d", os.Getpid()), bin, dir, []byte(cfg))
	if err != nil {
		return err
	}
	defer s.Close()
	total := func() int { return kernelTotal(s) }
	if err := waitFor(60*time.Second, func() bool { return total() == len(list) }); err != nil {
		return fmt.Errorf("the daemon's list in the kernel: %w", err)
	}
	fmt.Printf("daemon_start_with_list_s %.2f\n", time.Since(t0).Seconds())
	fmt.Printf("daemon_rss_mb %.1f\n", procRSS(s.Daemon.Process.Pid))
	n := strings.Count(s.Log(), "configuration reloaded")
	t0 = time.Now()
	if err := s.Daemon.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	if err := waitFor(30*time.Second, func() bool { return strings.Count(s.Log(), "configuration reloaded") > n }); err != nil {
		return err
	}
	fmt.Printf("daemon_reload_ms %.1f\n", ms(time.Since(t0)))
	var lat []time.Duration
	for i := range nBlocks {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)}), 32)
		req := control.BlockRequest{Prefix: config.Prefix{Prefix: p}, For: time.Hour, By: "bench"}
		t0 := time.Now()
		if _, err := s.Client().Block(req); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	fmt.Printf("daemon_block_ms %s\n", pct(lat))
	fmt.Printf("daemon_rss_after_mb %.1f\n", procRSS(s.Daemon.Process.Pid))
	return afterKill(s, bin, dir, len(list)+nBlocks)
}

// kernelTotal is how many entries the daemon's blocklist has in the kernel (-1: no answer).
func kernelTotal(s *sitelab.Site) int {
	v, err := s.Client().Blocklist()
	if err != nil || v.State == nil {
		return -1
	}
	return v.State.Kernel.Total()
}

// afterKill kills the daemon (-9: no save, the kernel keeps the sets) and starts it again
// with the same command line, then watches it for two minutes: after its first minute the
// owner must have settled (no rewrite of the whole list, next to no CPU, its memory given
// back).
func afterKill(s *sitelab.Site, bin, dir string, want int) error {
	if err := s.Daemon.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	_ = s.Lab.Wait(s.Daemon)
	t0 := time.Now()
	cmd, err := s.Lab.Start(lab.HostBox, bin, "run", "--config", filepath.Join(dir, "appliance.toml"), "--state", s.StateDir(), "--control", s.Control)
	if err != nil {
		return err
	}
	s.Daemon = cmd
	pid := cmd.Process.Pid
	total := func() int { return kernelTotal(s) }
	if err := waitFor(120*time.Second, func() bool { return total() == want }); err != nil {
		return fmt.Errorf("the list in the kernel after kill -9 and a restart: %w", err)
	}
	fmt.Printf("restart_after_kill_s %.2f\n", time.Since(t0).Seconds())
	rewrites := func() int { return strings.Count(s.Log(), "blocklist rewritten") }
	peak, atMin, cpuAtMin, minuteDone := 0.0, 0, 0.0, false
	for end := t0.Add(2 * time.Minute); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		peak = max(peak, procRSS(pid))
		if !minuteDone && time.Since(t0) >= time.Minute {
			minuteDone = true
			atMin, cpuAtMin = rewrites(), procCPU(pid)
			fmt.Printf("restart_after_kill_rewrites_1st_min %d\n", atMin)
		}
	}
	fmt.Printf("restart_after_kill_rewrites_2nd_min %d\n", rewrites()-atMin)
	fmt.Printf("restart_after_kill_cpu_2nd_min_pct %.1f\n", (procCPU(pid)-cpuAtMin)/time.Since(t0.Add(time.Minute)).Seconds()*100)
	fmt.Printf("restart_after_kill_rss_mb %.1f\n", procRSS(pid))
	fmt.Printf("restart_after_kill_rss_peak_mb %.1f\n", peak)
	return nil
}

// procCPU is the CPU time a process has used, in seconds (user and system).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var u, st float64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &st)
	return (u + st) / 100
}

// waitFor polls cond every 100 ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) error {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return nil
		}
	}
	return fmt.Errorf("not done within %s", d)
}

// kernelHas checks that the kernel holds every entry of list (point lookups: a dump of a big
// set costs minutes) and that the owner counts n entries written.
func kernelHas(fd int, o *owner, list []netip.Prefix, n int) error {
	if got := o.State().Kernel.Total(); got != n {
		return fmt.Errorf("the owner counts %d entries written, want %d", got, n)
	}
	t0 := time.Now()
	found, err := netcfg.New(fd).Lookup(list)
	if err != nil {
		return err
	}
	if len(found) != len(list) {
		return fmt.Errorf("the kernel has %d of the list's %d entries", len(found), len(list))
	}
	fmt.Fprintf(os.Stderr, "checked %d entries in the kernel in %s\n", len(list), time.Since(t0).Round(time.Millisecond))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(ds []time.Duration) string {
	slices.Sort(ds)
	at := func(q float64) float64 { return ms(ds[min(len(ds)-1, int(q*float64(len(ds))))]) }
	return fmt.Sprintf("p50=%.3f p95=%.3f p99=%.3f", at(0.5), at(0.95), at(0.99))
}

func heapMB() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

func rssMB() float64 { return procRSS(os.Getpid()) }

func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb float64
			fmt.Sscan(f[1], &kb)
			return kb / 1024
		}
	}
	return 0
}
