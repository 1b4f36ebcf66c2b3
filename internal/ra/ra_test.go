package ra

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// TestClientAutoconfigures: a device on the LAN (accept_ra=2) makes itself an address in
// the LAN's prefix from the box's advertisement and takes the box as its router; rdisc6
// sees the prefix and the box's DNS server (RDNSS). Nothing is advertised on an uplink,
// and when the advertiser stops the devices drop the box as their router.
func TestClientAutoconfigures(t *testing.T) {
	l := labtest.New(t, "rdisc6", "sysctl")
	if err := l.ConfigureBox(); err != nil {
		t.Fatal(err)
	}
	if err := l.AddLANHost("v6c", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Run("v6c", "sysctl", "-w", "net.ipv6.conf.eth0.accept_ra=2"); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(cfg, slog.New(slog.DiscardHandler))
	if srv == nil {
		t.Fatal("router advertisements are off for a LAN with an IPv6 /64")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Do(lab.HostBox, func() error { return srv.Run(ctx) }) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)

	waitOutput(t, l, "v6c", "an address made from the advertised prefix", func(s string) bool {
		return strings.Contains(s, "inet6 2001:db8:50:") && strings.Contains(s, "dynamic")
	}, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
	waitOutput(t, l, "v6c", "a default route through the box", func(s string) bool {
		return strings.Contains(s, "via fe80:") && strings.Contains(s, "proto ra")
	}, "ip", "-6", "route", "show", "default")

	out, err := l.Run("v6c", "rdisc6", "-1", "-w", "3000", "eth0")
	if err != nil {
		t.Fatalf("rdisc6: %v", err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"Prefix : 2001:db8:50::/64 On-link : Yes Autonomous address conf.: Yes", "Recursive DNS server : " + lab.BoxLAN6} {
		if !strings.Contains(flat, want) {
			t.Errorf("rdisc6 output lacks %q:\n%s", want, out)
		}
	}

	// A solicitation from the FTTC side reaches the box's wan0: no answer.
	if out, err := l.Run(lab.HostFTTC, "rdisc6", "-1", "-w", "1000", "-r", "2", "cust0"); err == nil || strings.Contains(out, "2001:db8:50") {
		t.Errorf("the box advertised on an uplink: %v\n%s", err, out)
	}

	stop()
	waitOutput(t, l, "v6c", "the default route gone once the box stopped advertising", func(s string) bool {
		return !strings.Contains(s, "proto ra")
	}, "ip", "-6", "route", "show", "default")
}

// waitOutput runs args in host until cond holds for their output.
func waitOutput(t *testing.T, l *lab.Lab, host, what string, cond func(string) bool, args ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := l.Run(host, args...)
		if err == nil && cond(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v\n%s", what, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
