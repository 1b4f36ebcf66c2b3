package shaper_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/shaperlab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/shaper"
	"github.com/officeedge/appliance/netcfg"
)

// Behaviour bounds (generous: the figures themselves are bench-voice's).
const (
	voiceSlack = 50 * time.Millisecond // loaded voice p99 within this of idle
	line       = 4_000_000
)

// startShaper runs the shaper on the lab box until the test ends.
func startShaper(t *testing.T, s *shaperlab.Site, o shaper.Options) *shaper.Shaper {
	t.Helper()
	o.NetNS = int(s.BoxNS)
	sh := shaper.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	labtest.WaitFor(t, "the shaper's tree on wan0", 10*time.Second, func() bool {
		st := sh.Status()
		return len(st) == 1 && st[0].Applied
	})
	return sh
}

// idleP99 is the call's idle p99 delay, over 100 packets after the first 50 (the first
// wait for the neighbours to be found).
func idleP99(t *testing.T, v *shaperlab.Voice) time.Duration {
	t.Helper()
	t0 := time.Now()
	labtest.WaitFor(t, "the call's media at the trunk", 10*time.Second, func() bool { return len(v.Delays(t0, time.Now())) >= 50 })
	t1 := time.Now()
	labtest.WaitFor(t, "100 idle packets of the call", 10*time.Second, func() bool { return len(v.Delays(t1, time.Now())) >= 100 })
	return shaperlab.Percentile(v.Delays(t1, time.Now()), 99)
}

// The lab: a 4 Mbit/s fixed line with a modem-sized queue, a call's media from the
// PBX to the trunk and an office PC uploading with four TCP streams. Without the shaper the
// call's packets wait behind the upload in the modem (the control); with it, voice goes
// first and the upload still fills the line.
func TestVoiceFirst(t *testing.T) {
	t.Parallel() // namespaces, interfaces and ports of its own
	l := labtest.New(t, "iperf3", "tc", "ss")
	s, _, err := shaperlab.New(l, shaperlab.Config("4Mbit"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Bottleneck("4mbit"); err != nil {
		t.Fatal(err)
	}
	v, err := s.StartVoice(41000)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	idle := idleP99(t, v)

	loaded := func(port int) (time.Duration, float64) {
		u, err := s.StartUpload(port, 4, 8*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		from := time.Now().Add(3 * time.Second) // the queues have filled
		bps, err := u.Wait()
		if err != nil {
			t.Fatal(err)
		}
		return shaperlab.Percentile(v.Delays(from, time.Now()), 99), bps
	}
	if d := v.DSCP(); d != netcfg.DSCPEF {
		t.Errorf("the call's media reached the trunk with DSCP %d, want EF (%d)", d, netcfg.DSCPEF)
	}
	unshaped, _ := loaded(41001)
	if unshaped < idle+voiceSlack {
		t.Fatalf("control: without the shaper the upload should delay the call (modem queue): idle p99 %s, loaded p99 %s", idle, unshaped)
	}

	startShaper(t, s, shaper.Options{Links: []shaper.Link{{Name: "FTTC", Interface: lab.BoxWANIf, Rate: line}}})
	shapedP99, bps := loaded(41002)
	t.Logf("voice p99: idle %s, loaded unshaped %s, loaded shaped %s; upload %.2f Mbit/s", idle, unshaped, shapedP99, bps/1e6)
	if shapedP99 > idle+voiceSlack {
		t.Errorf("with the shaper the call's p99 delay under load is %s (idle %s, without the shaper %s)", shapedP99, idle, unshaped)
	}
	if bps < 0.85*line {
		t.Errorf("the upload got %.2f Mbit/s of the 4 Mbit/s line with the shaper: less than 85 %%", bps/1e6)
	}
}

// autorate on a line whose rate falls from 8 to 2 Mbit/s under a full upload (an LTE cell
// filling up): the shaper follows the round trips down and the call's delay comes back.
func TestAutorateFollowsTheLine(t *testing.T) {
	t.Parallel() // namespaces, interfaces and ports of its own
	l := labtest.New(t, "iperf3", "tc", "ss", "ping")
	s, _, err := shaperlab.New(l, shaperlab.Config("auto", `upload_min = "1Mbit"`, `upload_max = "10Mbit"`))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Bottleneck("8mbit"); err != nil {
		t.Fatal(err)
	}
	p, err := s.StartPinger()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	v, err := s.StartVoice(41010)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	idle := idleP99(t, v)
	sh := startShaper(t, s, shaper.Options{Links: []shaper.Link{{Name: "FTTC", Interface: lab.BoxWANIf, Auto: true, Min: 1_000_000, Max: 10_000_000}}, RTT: p.RTT})

	u, err := s.StartUpload(41011, 4, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Stop()
	good := func() bool {
		now := time.Now()
		ds := v.Delays(now.Add(-time.Second), now)
		return len(ds) >= 30 && shaperlab.Percentile(ds, 99) < idle+voiceSlack
	}
	labtest.WaitFor(t, "the call's delay settled on the 8 Mbit/s line", 20*time.Second, func() bool { return sh.Status()[0].Line < 8_000_000 && good() })
	if err := s.Bottleneck("2mbit"); err != nil {
		t.Fatal(err)
	}
	drop := time.Now()
	labtest.WaitFor(t, "the shaper down to the 2 Mbit/s line and the call's delay back", 25*time.Second, func() bool {
		return time.Since(drop) > 2*time.Second && sh.Status()[0].Line < 2_500_000 && good()
	})
	t.Logf("recovered %s after the drop: line rate %d bit/s", time.Since(drop).Round(100*time.Millisecond), sh.Status()[0].Line)
}

// `appliance wan speedtest` measures the line through its interface, not the shaper in
// front of it: on a 4 Mbit/s line shaped to 1 Mbit/s, the upload it reports is the line's.
func TestSpeedtestMeasuresTheLine(t *testing.T) {
	t.Parallel() // namespaces, interfaces and ports of its own
	l := labtest.New(t, "tc")
	s, _, err := shaperlab.New(l, shaperlab.Config("1Mbit"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Bottleneck("4mbit"); err != nil {
		t.Fatal(err)
	}
	ln, err := l.ListenTCP(lab.HostRemote, net.JoinHostPort(lab.Remote4, "41020"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: shaperlab.SpeedServer(5 * time.Second), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	startShaper(t, s, shaper.Options{Links: []shaper.Link{{Name: "FTTC", Interface: lab.BoxWANIf, Rate: 1_000_000}}})

	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = l.Do(lab.HostBox, func() error {
			c, err = shaper.SpeedDialer(lab.BoxWANIf, netip.MustParseAddr(lab.BoxWAN4)).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := shaper.Speedtest(ctx, shaper.SpeedOptions{Uplink: "FTTC", Interface: lab.BoxWANIf, Dial: dial,
		URL: "http://" + net.JoinHostPort(lab.Remote4, "41020") + "/", Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("download %.2f Mbit/s, upload %.2f Mbit/s", r.Download/1e6, r.Upload/1e6)
	if r.Upload < 2e6 || r.Upload > 6e6 {
		t.Errorf("the upload of a 4 Mbit/s line shaped to 1 Mbit/s measured %.2f Mbit/s: not the line's rate", r.Upload/1e6)
	}
	if r.Download <= 0 {
		t.Errorf("no download measured")
	}
}
