package dhcpd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/dhcpd/dhcptest"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// dhcpSection is the lab site's [dhcp]: a pool, a desk phone's static lease, and
// provisioning for the phone vendor whose OUI is 80:5e:c0.
const dhcpSection = `
[dhcp]
enabled = true
pool = "192.168.50.100-192.168.50.150"
lease_time = "1h"
domain = "office.lan"
check_interval = "10s"

[dhcp.static.deskphone]
mac = "80:5e:c0:00:00:21"
address = "192.168.50.21"

[[dhcp.provision]]
name = "yealink"
mac_prefixes = ["80:5e:c0"]
url = "http://192.168.50.10/prov/"
tftp_servers = ["192.168.50.10"]
vendor_specific = "01:04:c0:a8:32:0a"
`

// site is the lab with DHCP clients of its own on the LAN switch.
type site struct {
	t   *testing.T
	l   *lab.Lab
	bus *events.Bus
	al  *alerts.Store
	log *slog.Logger // the servers' log; nil: the test's
}

func newSite(t *testing.T) *site {
	t.Helper()
	l := labtest.New(t, append([]string{"dnsmasq"}, dhcptest.Tools...)...)
	s := &site{t: t, l: l, bus: events.New(100), al: alerts.New(nil)}
	if err := l.ConfigureBox(); err != nil {
		t.Fatal(err)
	}
	return s
}

// host adds a device on the LAN switch, its interface eth0 with the MAC mac ("": random).
func (s *site) host(name, mac string) {
	s.t.Helper()
	if err := s.l.AddLANHost(name, mac); err != nil {
		s.t.Fatal(err)
	}
}

func (s *site) config(extra string) *config.Config {
	s.t.Helper()
	cfg, err := config.Parse("lab.toml", append(append([]byte{}, lab.Config...), extra...))
	if err != nil {
		s.t.Fatal(err)
	}
	return cfg
}

// serve runs a server for cfg in the box with its leases in stateDir, until the test (or stop) ends it.
func (s *site) serve(cfg *config.Config, stateDir string) (srv *Server, stop func()) {
	s.t.Helper()
	log := s.log
	if log == nil {
		log = testLog(s.t)
	}
	srv, err := New(cfg, Options{StateDir: stateDir, Alerts: s.al, Bus: s.bus, Log: log})
	if err != nil || srv == nil {
		s.t.Fatalf("New: %v %v", srv, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.l.Do(lab.HostBox, func() error { return srv.Run(ctx) }) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("Run: %v", err)
		}
	}
	s.t.Cleanup(stop)
	return srv, stop
}

func waitServing(t *testing.T, srv *Server, want bool) Status {
	t.Helper()
	var st Status
	labtest.WaitFor(t, fmt.Sprintf("serving = %v", want), 30*time.Second, func() bool {
		st = srv.Status()
		return st.Serving == want && st.Message != "checking the LAN for another DHCP server"
	})
	return st
}

func (s *site) dhclient(host, hostname string) map[string]string {
	s.t.Helper()
	return dhcptest.Dhclient(s.t, s.l, host, hostname)
}

func (s *site) udhcpc(host, iface, hostname string) map[string]string {
	s.t.Helper()
	return dhcptest.Udhcpc(s.t, s.l, host, iface, hostname)
}

func (s *site) tempDir(name string) string {
	s.t.Helper()
	d, err := os.MkdirTemp(s.t.TempDir(), name+"-*")
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
