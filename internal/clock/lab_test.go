package clock_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/officeedge/appliance/integration/dnslab"
	"github.com/officeedge/appliance/internal/clock"
	"github.com/officeedge/appliance/internal/dnsfwd"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// fakeClock is the box's system clock as a Pi without a clock battery has it after a power
// cut: it starts in 1970 and runs; Set steps it. The machine's own clock is never touched.
type fakeClock struct {
	mu    sync.Mutex
	base  time.Time
	since time.Time
	sets  []time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.base.Add(time.Since(f.since))
}

func (f *fakeClock) Set(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.base, f.since = t, time.Now()
	f.sets = append(f.sets, t)
	return nil
}

func (f *fakeClock) Sets() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.sets...)
}

// startChrony runs chronyd in the internet namespace and waits until it answers the box.
func startChrony(t *testing.T, l *lab.Lab, addr string) {
	t.Helper()
	if err := dnslab.Chrony(l, t.TempDir(), lab.HostNet, addr); err != nil {
		t.Fatal(err)
	}
	// Ready when it answers: a query from the box over the FTTC line.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var r *ntp.Response
		err := l.Do(lab.HostBox, func() error {
			var err error
			r, err = ntp.QueryWithOptions(addr, ntp.QueryOptions{Timeout: 500 * time.Millisecond})
			return err
		})
		if err == nil && r.Validate() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("chronyd does not answer on %s: %v (%v)", addr, err, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// phoneQuery asks the box's SNTP server from the phone on the LAN.
func phoneQuery(l *lab.Lab) (*ntp.Response, error) { return sntpQuery(l, lab.HostPhone, time.Second) }

// sntpQuery asks the box's SNTP server from host on the LAN.
func sntpQuery(l *lab.Lab, host string, timeout time.Duration) (*ntp.Response, error) {
	return ntp.QueryWithOptions(lab.BoxLAN4+":123", ntp.QueryOptions{Timeout: timeout,
		Dialer: func(_, remote string) (net.Conn, error) { return l.DialUDP(host, "", remote) }})
}

// timeLab is a lab of the test's own with the box configured and a real NTP server
// (chronyd) on the internet.
func timeLab(t *testing.T) *lab.Lab {
	l := labtest.New(t, "chronyd")
	if err := l.ConfigureBox(); err != nil {
		t.Fatal(err)
	}
	startChrony(t, l, lab.Probe4)
	return l
}

// dialFTTC is the clock's way out as the daemon gives it: bound to the active uplink (FTTC
// here), in the box's namespace.
func dialFTTC(l *lab.Lab) func(ctx context.Context, addr string) (net.Conn, error) {
	via := &dnsfwd.Upstream{Uplink: "FTTC", Interface: lab.BoxWANIf, Source: netip.MustParseAddr(lab.BoxWAN4)}
	return func(ctx context.Context, addr string) (conn net.Conn, err error) {
		err = l.Do(lab.HostBox, func() error { conn, err = via.DialContext(ctx, "udp", addr); return err })
		return conn, err
	}
}

// serveLAN serves c's SNTP on the box's LAN address until the test ends (before its
// temporary folders go); run starts c syncing. ctx ends with the test.
func serveLAN(t *testing.T, l *lab.Lab, c *clock.Clock) (ctx context.Context, run func()) {
	pc, err := l.ListenUDP(lab.HostBox, lab.BoxLAN4+":123")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx, pc, []netip.Prefix{netip.MustParsePrefix(lab.LANNet4)}) }()
	var running sync.WaitGroup
	t.Cleanup(func() { cancel(); <-served; running.Wait() })
	return ctx, func() {
		running.Add(1)
		go func() { defer running.Done(); _ = c.Run(ctx) }()
	}
}

// A box whose clock reads 1970 (and is before the saved last-known time) is untrusted and
// refuses to serve time; a real NTP server on the internet corrects it through the FTTC
// line, it turns trusted, steps its (injected) clock once, and then serves the LAN at
// stratum 9. Nothing else happened because of the 56-year jump.
func TestClockFrom1970(t *testing.T) {
	l := timeLab(t)

	state := filepath.Join(t.TempDir(), "clock")
	lastGood := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano) + "\n"
	if err := os.WriteFile(state, []byte(lastGood), 0o600); err != nil {
		t.Fatal(err)
	}
	fc := &fakeClock{base: time.Unix(5, 0), since: time.Now()}
	bus := events.New(100)
	sub, unsub := bus.Subscribe(100)
	defer unsub()
	c := clock.New(clock.Options{Servers: []string{lab.Probe4}, Interval: time.Hour, Now: fc.Now, Set: fc.Set, StateFile: state,
		Bus: bus, Dial: dialFTTC(l)})
	if c.Trusted() {
		t.Fatalf("a clock reading %s, before the saved %s, is trusted: %+v", fc.Now(), lastGood, c.State())
	}
	ctx, run := serveLAN(t, l, c)

	// Untrusted: the LAN gets a kiss-o'-death, never 1970.
	r, err := phoneQuery(l)
	if err != nil {
		t.Fatalf("SNTP query of the untrusted box: %v", err)
	}
	if !r.IsKissOfDeath() || r.KissCode != "INIT" || r.Leap != ntp.LeapNotInSync {
		t.Fatalf("untrusted box answered stratum %d kiss %q leap %d time %s; want a kiss-o'-death INIT", r.Stratum, r.KissCode, r.Leap, r.Time)
	}

	run()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := c.WaitTrusted(wctx); err != nil {
		t.Fatalf("clock not trusted: %v; state %+v", err, c.State())
	}
	st := c.State()
	if d := fc.Now().Sub(time.Now()); d > 2*time.Second || d < -2*time.Second {
		t.Fatalf("the box's clock is %s off after the sync: %+v", d, st)
	}
	if sets := fc.Sets(); len(sets) != 1 {
		t.Fatalf("clock set %d times (%v), want once", len(sets), sets)
	}
	if !st.Trusted || st.Server != lab.Probe4 || st.Stratum != 8 || st.Offset < 50*365*24*time.Hour || !strings.Contains(st.Why, "synced") {
		t.Fatalf("state after sync: %+v", st)
	}
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil || saved.Year() < 2020 || saved.Before(time.Now().Add(-time.Minute)) {
		t.Fatalf("saved known-good time %q (%v): want now, never 1970", b, err)
	}

	// Trusted: the LAN gets the box's time at stratum 9, from a real client too.
	r, err = phoneQuery(l)
	if err != nil || r.Validate() != nil {
		t.Fatalf("SNTP query of the trusted box: %v %+v", err, r)
	}
	if r.Stratum != 9 || r.ClockOffset > time.Second || r.ClockOffset < -time.Second {
		t.Fatalf("box served stratum %d offset %s; want 9 and the right time", r.Stratum, r.ClockOffset)
	}
	out, err := l.Run(lab.HostPhone, "chronyd", "-Q", "-u", "root", "-f", "/dev/null", "pidfile "+filepath.Join(t.TempDir(), "q.pid"),
		"server "+lab.BoxLAN4+" iburst maxsamples 1")
	if err != nil || !strings.Contains(out, "System clock wrong by") {
		t.Fatalf("chronyd -Q from the phone against the box: %v\n%s", err, out)
	}

	// The only event is the sync itself: the jump started nothing else.
	var kinds []string
	for len(sub) > 0 {
		kinds = append(kinds, (<-sub).Kind)
	}
	if len(kinds) != 1 || kinds[0] != "clock.synced" {
		t.Fatalf("events %v, want one clock.synced", kinds)
	}
}

// A box restarted with a sane clock (not before the saved time) is trusted at once, and
// one with no saved time and no server stays untrusted and says why.
func TestTrustFromSavedTime(t *testing.T) {
	state := filepath.Join(t.TempDir(), "clock")
	if err := os.WriteFile(state, []byte(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := clock.New(clock.Options{StateFile: state})
	if !c.Trusted() || c.WaitTrusted(context.Background()) != nil {
		t.Fatalf("not trusted from the saved time: %+v", c.State())
	}
	fresh := clock.New(clock.Options{StateFile: filepath.Join(t.TempDir(), "none"), Now: func() time.Time { return time.Unix(0, 0) }})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if fresh.Trusted() || fresh.WaitTrusted(ctx) == nil || !strings.Contains(fresh.State().Why, "not synced") {
		t.Fatalf("a 1970 clock with nothing saved: %+v", fresh.State())
	}
}
