// Command bench-relay measures what the voice relay (issue 22) does for a call in the
// namespace lab (root only).
//
// It runs the appliance in a lab's box with [relay] pointing at `appliance relay` in the lab's
// relay host, and a call's media at 50 packets/s each way between the PBX and a trunk that
// sends to the relay's address (the SDP address) and never latches. The fixed line fails N
// times each way (its carrier goes, or it goes silent) and comes back; each time the longest
// silence each way is measured from the call's sequence numbers (call_media_gap_ms), with
// duplicate off and on. Meanwhile the trunk sends an INVITE to the relay's address every
// 100 ms: the time from each failover (without duplicate) to the first INVITE at the PBX is
// inbound_call_after_failover_ms. The relay is restarted once mid-call, without duplicate
// (fault=relay_restart). Then the round trip through the tunnel is compared with the direct
// one (relay_added_latency_ms), and the modem's bytes with duplicate on are metered at its ISP
// during a call and without one (duplicate_lte_bytes_per_call_minute). One line per figure.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/officeedge/appliance/integration/benchstat"
	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/relay/box"
	"github.com/officeedge/appliance/wan"
)

func main() {
	trials := flag.Int("trials", 4, "trials of each fault (carrier, silent; each ends in a failback), with duplicate off and on")
	stability := flag.Duration("stability", 2*time.Second, "failback stability period (default config: 60s; shorter keeps the run to minutes)")
	meter := flag.Duration("meter", 15*time.Second, "how long the modem's bytes are metered with a call and without")
	limit := flag.Duration("limit", 8*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "print every trial")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("bench-relay needs root (network namespaces, nftables, conntrack)")
	}
	b := &bench{trials: *trials, stability: *stability, meter: *meter, end: time.Now().Add(*limit), verbose: *verbose,
		gaps: map[string][]float64{}}
	if err := b.run(); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-relay:", msg)
	os.Exit(1)
}

type bench struct {
	trials    int
	stability time.Duration
	meter     time.Duration
	end       time.Time
	verbose   bool

	site    *sitelab.Site
	relay   *sitelab.Relay
	in      *inbound
	gaps    map[string][]float64 // ms, by "fault=… dir=… duplicate=…"
	inbound []float64            // ms from the failover to the first INVITE at the PBX
	calls   int                  // calls made: each its own ports
}

type fault struct {
	name string
	set  func(broken bool) error
}

func (b *bench) run() (err error) {
	dir, bin, done, err := build.TempDaemon("bench-relay")
	if err != nil {
		return err
	}
	defer done()
	if b.relay, err = sitelab.NewRelay(bin); err != nil {
		return err
	}
	b.site, err = sitelab.Start(fmt.Sprintf("br%d", os.Getpid()%100000), bin, dir, b.config(false), b.relay.Start)
	if err != nil {
		return fmt.Errorf("%w\nrelay log:\n%s", err, b.relay.Log())
	}
	defer b.site.Close()
	defer func() {
		if err != nil && b.verbose {
			fmt.Fprintf(os.Stderr, "daemon log:\n%s\nrelay log:\n%s\n", b.site.Log(), b.relay.Log())
		}
	}()
	if b.in, err = startInbound(b.site.Lab); err != nil {
		return err
	}
	defer b.in.Close()

	s := b.site
	faults := []fault{
		{"carrier", func(broken bool) error { return s.Carrier(wan.Primary, !broken) }},
		{"silent", func(broken bool) error { return s.Silent(wan.Primary, broken) }},
	}
	var lteBytes float64
	for _, dup := range []bool{false, true} {
		if dup {
			if err = s.Reload(b.config(true)); err != nil {
				return err
			}
		}
		var c *sitelab.Call
		if c, err = b.call(); err != nil {
			return err
		}
		for i := range b.trials {
			for _, f := range faults {
				if err = b.trial(c, f, dup, i); err != nil {
					c.Stop()
					return err
				}
			}
		}
		if !dup {
			if err = b.relayRestart(c); err != nil {
				c.Stop()
				return err
			}
		}
		if dup {
			if lteBytes, err = b.meterLTE(c); err != nil {
				return err
			}
		}
		c.Stop()
	}
	added, tunnel, direct, err := b.latency()
	if err != nil {
		return err
	}

	fmt.Printf("# %d trials of each fault with duplicate off and on, a call at 50 packets/s each way, the trunk sending to the relay's address; failback stability %s\n", b.trials, b.stability)
	for _, dup := range []string{"off", "on"} {
		faults := []string{"carrier", "silent", "failback"}
		if dup == "off" {
			faults = append(faults, "relay_restart")
		}
		for _, f := range faults {
			for _, d := range []string{"to_pbx", "to_trunk"} {
				name := fmt.Sprintf("fault=%s dir=%s duplicate=%s", f, d, dup)
				fmt.Printf("call_media_gap_ms %s p50=%.0f p95=%.0f\n", name, benchstat.Pct(b.gaps[name], 50), benchstat.Pct(b.gaps[name], 95))
			}
		}
	}
	benchstat.Line("inbound_call_after_failover_ms", b.inbound, 0)
	fmt.Printf("# round trip PBX->trunk->PBX: through the tunnel p50=%.2f ms, direct p50=%.2f ms\n", benchstat.Pct(tunnel, 50), benchstat.Pct(direct, 50))
	benchstat.Line("relay_added_latency_ms", added, 2)
	fmt.Printf("duplicate_lte_bytes_per_call_minute %.0f\n", lteBytes)
	return nil
}

// config is the box's config with the lab's relay, and the failback shortened (and never
// lengthened after a flap: each trial is a deliberate one).
func (b *bench) config(dup bool) []byte {
	st := fmt.Sprintf("%q", b.stability.String())
	return b.relay.BoxConfig(sitelab.Config("stability = "+st, "hold_down_max = "+st), dup)
}

// call waits until the box says voice goes through the relay, starts a new call (its own
// ports) and waits until its media runs both ways, the office's reaching the trunk from the
// relay's address only.
func (b *bench) call() (*sitelab.Call, error) {
	if err := waitFor(30*time.Second, "voice through the relay", func() bool {
		st, err := b.site.Client().RelayStatus()
		return err == nil && st.Using == box.UsingRelay
	}); err != nil {
		return nil, err
	}
	b.calls++
	c, err := sitelab.StartCall(b.site.Lab, sitelab.CallOptions{SDP: lab.Relay4, PBXPort: sitelab.CallPBXPort + 2*b.calls,
		TrunkPort: sitelab.CallTrunkPort + 2*b.calls, Max: time.Until(b.end)})
	if err != nil {
		return nil, err
	}
	m := c.Mark()
	if err := waitFor(30*time.Second, "the call's media through the relay", func() bool {
		if !c.Flowing(m, 25) {
			return false
		}
		from := c.ToTrunk.From(m.ToTrunk)
		if len(from) == 1 && from[0] == lab.Relay4 {
			return true
		}
		m = c.Mark() // not yet: look at the next packets
		return false
	}); err != nil {
		c.Stop()
		return nil, fmt.Errorf("%w (the trunk received the PBX's media from %v)", err, c.ToTrunk.From(m.ToTrunk))
	}
	return c, nil
}

// trial breaks the fixed line, waits for the failover and the media both ways, mends it,
// and waits for the failback and the media again, recording the longest silence each way.
func (b *bench) trial(c *sitelab.Call, f fault, dup bool, i int) error {
	if time.Now().After(b.end) {
		return errors.New("time limit reached")
	}
	s := b.site
	d := map[bool]string{false: "off", true: "on"}[dup]
	record := func(name string, m sitelab.Mark) (toPBX, toTrunk time.Duration) {
		toPBX, toTrunk = c.Gaps(m)
		b.gaps[fmt.Sprintf("fault=%s dir=to_pbx duplicate=%s", name, d)] = append(b.gaps[fmt.Sprintf("fault=%s dir=to_pbx duplicate=%s", name, d)], ms(toPBX))
		b.gaps[fmt.Sprintf("fault=%s dir=to_trunk duplicate=%s", name, d)] = append(b.gaps[fmt.Sprintf("fault=%s dir=to_trunk duplicate=%s", name, d)], ms(toTrunk))
		return
	}
	m, t0 := c.Mark(), time.Now()
	if err := f.set(true); err != nil {
		return err
	}
	st, err := s.WaitStatus(20*time.Second, "failed over", func(st wan.Status) bool { return st.Active == wan.Backup })
	if err != nil {
		return fmt.Errorf("%s trial %d: %w", f.name, i+1, err)
	}
	if err := b.resumed(c, m); err != nil {
		return fmt.Errorf("%s trial %d: %w", f.name, i+1, err)
	}
	g1, g2 := record(f.name, m)
	if !dup {
		tf, ok := sitelab.Event(st, "wan.failover", t0)
		if !ok {
			return fmt.Errorf("%s trial %d: no failover event", f.name, i+1)
		}
		at, err := b.in.wait(tf, 20*time.Second)
		if err != nil {
			return fmt.Errorf("%s trial %d: %w", f.name, i+1, err)
		}
		b.inbound = append(b.inbound, ms(at.Sub(tf)))
	}
	m = c.Mark()
	if err := f.set(false); err != nil {
		return err
	}
	if _, err := s.WaitStatus(b.stability+30*time.Second, "failed back", func(st wan.Status) bool { return st.Active == wan.Primary }); err != nil {
		return fmt.Errorf("%s trial %d: %w", f.name, i+1, err)
	}
	if err := b.resumed(c, m); err != nil {
		return fmt.Errorf("%s trial %d: failback: %w", f.name, i+1, err)
	}
	g3, g4 := record("failback", m)
	if b.verbose {
		fmt.Fprintf(os.Stderr, "duplicate=%s %s trial %d: gap to the PBX %s, to the trunk %s; failback %s, %s\n", d, f.name, i+1, g1, g2, g3, g4)
	}
	return nil
}

// relayRestart restarts `appliance relay` mid-call (once) and records the silence each way
// until the media runs again: the box keeps its call state, the tunnel needs a new handshake.
func (b *bench) relayRestart(c *sitelab.Call) error {
	m := c.Mark()
	if err := b.relay.Restart(); err != nil {
		return err
	}
	if err := waitFor(60*time.Second, "the media both ways after the relay restarted", func() bool { return c.Flowing(m, 25) }); err != nil {
		return err
	}
	n := c.Mark()
	if err := waitFor(5*time.Second, "more media", func() bool { return c.Flowing(n, 15) }); err != nil {
		return err
	}
	toPBX, toTrunk := c.Gaps(m)
	b.gaps["fault=relay_restart dir=to_pbx duplicate=off"] = []float64{ms(toPBX)}
	b.gaps["fault=relay_restart dir=to_trunk duplicate=off"] = []float64{ms(toTrunk)}
	if b.verbose {
		fmt.Fprintf(os.Stderr, "relay restart: gap to the PBX %s, to the trunk %s\n", toPBX, toTrunk)
	}
	return nil
}

// resumed waits until half a second of the media sent after m has arrived each way, and
// another 300 ms so that the silence's end is inside the measured window.
func (b *bench) resumed(c *sitelab.Call, m sitelab.Mark) error {
	if err := waitFor(15*time.Second, "the media both ways", func() bool { return c.Flowing(m, 25) }); err != nil {
		return err
	}
	n := c.Mark()
	return waitFor(5*time.Second, "more media", func() bool { return c.Flowing(n, 15) })
}

// meterLTE is the modem's bytes a minute (counted at its ISP) that a call adds with
// duplicate on: metered during the call, and after it with the tunnel idle.
func (b *bench) meterLTE(c *sitelab.Call) (float64, error) {
	count := func() (float64, error) {
		m, err := b.site.StartMeter(wan.Backup)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		time.Sleep(b.meter) // the measurement's length
		n, err := m.Bytes()
		return float64(n) / time.Since(t0).Minutes(), err
	}
	withCall, err := count()
	if err != nil {
		return 0, err
	}
	c.Stop()
	idle, err := count()
	if err != nil {
		return 0, err
	}
	if b.verbose {
		fmt.Fprintf(os.Stderr, "LTE bytes a minute with duplicate on: %.0f during a call, %.0f idle\n", withCall, idle)
	}
	return withCall - idle, nil
}

// latency times round trips from the PBX to an echo on the trunk through the tunnel (from
// the PBX's RTP port: voice) and direct (from a port that is not voice), interleaved, and
// returns the tunnel's extra time per pair and both sets of round trips, in ms. The echo
// says which address it saw, to be sure of each path.
func (b *bench) latency() (added, tunnel, direct []float64, err error) {
	l := b.site.Lab
	echo, err := l.ListenUDP(lab.HostTrunk, lab.Trunk4+":32000")
	if err != nil {
		return nil, nil, nil, err
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFromUDP(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			_, _ = echo.WriteToUDP(append(buf[:n:n], from.IP.String()...), from)
		}
	}()
	voice, err := l.DialUDP(lab.HostPBX, lab.PBX4+":10900", lab.Trunk4+":32000")
	if err != nil {
		return nil, nil, nil, err
	}
	defer voice.Close()
	other, err := l.DialUDP(lab.HostPBX, lab.PBX4+":40900", lab.Trunk4+":32000")
	if err != nil {
		return nil, nil, nil, err
	}
	defer other.Close()
	rtt := func(c *net.UDPConn, want string) (float64, error) {
		buf := make([]byte, 1500)
		for range 5 { // a lost packet is retried, a stray one skipped
			t0 := time.Now()
			stamp := []byte(fmt.Sprintf("%d|", t0.UnixNano()))
			if _, err := c.Write(stamp); err != nil {
				return 0, err
			}
			_ = c.SetReadDeadline(t0.Add(time.Second))
			n, err := c.Read(buf)
			if err != nil || !strings.HasPrefix(string(buf[:n]), string(stamp)) {
				continue
			}
			if seen := string(buf[len(stamp):n]); seen != want {
				return 0, fmt.Errorf("the echo saw %s, want %s: not the path measured", seen, want)
			}
			return ms(time.Since(t0)), nil
		}
		return 0, fmt.Errorf("no echo from %s", c.RemoteAddr())
	}
	for range 200 {
		t, err := rtt(voice, lab.Relay4)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("through the tunnel: %w", err)
		}
		d, err := rtt(other, lab.BoxWAN4)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("direct: %w", err)
		}
		tunnel, direct, added = append(tunnel, t), append(direct, d), append(added, t-d)
		time.Sleep(10 * time.Millisecond) // paced like a call's packets, not a flood
	}
	return added, tunnel, direct, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func waitFor(d time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not %s within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
