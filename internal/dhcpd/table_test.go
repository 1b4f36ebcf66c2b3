package dhcpd

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
)

// The allocation rules, message by message, without a network: these are the cases the
// real clients in the lab tests do not reach (a full pool, a decline, a wrong request).

type fixture struct {
	t   testing.TB
	s   *Server
	now time.Time
	bus *events.Bus
	al  *alerts.Store
}

func newFixture(t testing.TB, pool, stateDir string) *fixture {
	t.Helper()
	text := strings.Replace(dhcpSection, `pool = "192.168.50.100-192.168.50.150"`, `pool = "`+pool+`"`, 1)
	cfg, err := config.Parse("lab.toml", append(append([]byte{}, lab.Config...), text...))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), bus: events.New(100), al: alerts.New(nil)}
	f.s, err = New(cfg, Options{StateDir: stateDir, Alerts: f.al, Bus: f.bus, Log: testLog(t), Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.s.serving = true
	return f
}

func mac(n byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, n} }

func (f *fixture) send(t dhcpv4.MessageType, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	f.t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(t)}, mods...)...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.replyLocked(m)
}

// lease runs DISCOVER and REQUEST for hw and returns the address it was given ("" none).
func (f *fixture) lease(hw net.HardwareAddr) string {
	f.t.Helper()
	o := f.send(dhcpv4.MessageTypeDiscover, hw)
	if o == nil {
		return ""
	}
	a := f.send(dhcpv4.MessageTypeRequest, hw, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(o.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 50, 1))))
	if a == nil || a.MessageType() != dhcpv4.MessageTypeAck {
		f.t.Fatalf("offered %s to %s, then no ACK: %v", o.YourIPAddr, hw, a)
	}
	return a.YourIPAddr.String()
}

func TestFullPoolReusesTheLongestEnded(t *testing.T) {
	f := newFixture(t, "192.168.50.100-192.168.50.102", "")
	for i, want := range []string{"192.168.50.100", "192.168.50.101", "192.168.50.102"} {
		if got := f.lease(mac(byte(i + 1))); got != want {
			t.Fatalf("device %d got %q, want %s", i+1, got, want)
		}
	}
	if got := f.lease(mac(9)); got != "" {
		t.Errorf("a full pool gave %s", got)
	}
	if ev := f.bus.Recent(10); len(ev) == 0 || ev[len(ev)-1].Kind != "dhcp.pool_full" {
		t.Errorf("no dhcp.pool_full event: %+v", ev)
	}
	// Device 2 leaves (release), then the leases of 1 and 3 end: the newcomer gets the
	// address that has been free longest, and device 2 gets its own back after all.
	f.send(dhcpv4.MessageTypeRelease, mac(2), dhcpv4.WithClientIP(net.IPv4(192, 168, 50, 101)))
	f.now = f.now.Add(2 * time.Hour)
	if got := f.lease(mac(9)); got != "192.168.50.101" {
		t.Errorf("newcomer got %q, want the released 192.168.50.101", got)
	}
	if got := f.lease(mac(1)); got != "192.168.50.100" {
		t.Errorf("device 1 came back to %q, want its 192.168.50.100", got)
	}
}

func TestRequestsForAnotherAddress(t *testing.T) {
	f := newFixture(t, "192.168.50.100-192.168.50.150", "")
	req := func(hw net.HardwareAddr, ip net.IP, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		return f.send(dhcpv4.MessageTypeRequest, hw, append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))...)
	}
	// A device rebooting with an address of the pool it never had from here gets it if free.
	if r := req(mac(1), net.IPv4(192, 168, 50, 120)); r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("INIT-REBOOT for a free address: %v", r)
	}
	for _, tc := range []struct {
		what string
		hw   net.HardwareAddr
		ip   net.IP
	}{
		{"another device's lease", mac(2), net.IPv4(192, 168, 50, 120)},
		{"an address outside the pool", mac(2), net.IPv4(192, 168, 50, 5)},
		{"the desk phone's static address", mac(2), net.IPv4(192, 168, 50, 21)},
		{"another address than its static one", net.HardwareAddr{0x80, 0x5e, 0xc0, 0, 0, 0x21}, net.IPv4(192, 168, 50, 130)},
	} {
		if r := req(tc.hw, tc.ip); r == nil || r.MessageType() != dhcpv4.MessageTypeNak {
			t.Errorf("a request for %s: %v, want a NAK", tc.what, r)
		}
	}
	if r := req(mac(3), net.IPv4(192, 168, 50, 130), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 50, 2)))); r != nil {
		t.Errorf("a request to another server was answered: %v", r)
	}
	// A device that finds its address in use declines it: nobody gets it for a while.
	ip := f.lease(mac(4))
	f.send(dhcpv4.MessageTypeDecline, mac(4), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip))))
	if got := f.lease(mac(4)); got == ip || got == "" {
		t.Errorf("after declining %s the device got %q", ip, got)
	}
	// The box's own DISCOVER (its check for other servers) is never answered.
	f.s.ownMAC = mac(7)
	if r := f.send(dhcpv4.MessageTypeDiscover, mac(7)); r != nil {
		t.Errorf("the box's own DISCOVER was answered: %v", r)
	}
	f.s.serving = false
	if r := f.send(dhcpv4.MessageTypeDiscover, mac(8)); r != nil {
		t.Errorf("answered while refusing to serve: %v", r)
	}
}

func TestUnreadableLeasesKeptAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dhcp-leases.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"leases":[{"mac":`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "192.168.50.100-192.168.50.150", dir)
	if b, err := os.ReadFile(path + ".bad"); err != nil || !strings.Contains(string(b), `"leases"`) {
		t.Errorf("the unreadable file was not kept aside: %v", err)
	}
	al := f.al.List()
	if len(al) != 1 || al[0].Key != KeyLeases || !strings.Contains(al[0].Message, ".bad") {
		t.Errorf("alerts: %+v", al)
	}
	ip := f.lease(mac(1))
	f.s.flush() // what the running server's save loop does within a second
	g := newFixture(t, "192.168.50.100-192.168.50.150", dir)
	if ls := g.s.Leases(); len(ls) != 2 || ls[1].IP != netip.MustParseAddr(ip) || ls[1].MAC != mac(1).String() {
		t.Errorf("the new leases were not saved: %+v", ls)
	}
	if al := f.al.List(); len(al) != 1 || al[0].Active {
		t.Errorf("the alert should be cleared once the leases are saved: %+v", al)
	}
}

// BenchmarkDiscoverBusyPool is one DISCOVER from a new device when all but the last address
// of a /24's pool are leased: the worst walk over the pool.
func BenchmarkDiscoverBusyPool(b *testing.B) {
	f := newFixture(b, "192.168.50.30-192.168.50.254", "")
	for i := range 224 {
		ip := netip.AddrFrom4([4]byte{192, 168, 50, byte(30 + i)})
		f.s.t.bind(net.HardwareAddr{0x02, 0, 0, 0, 1, byte(i)}.String(), ip, "", f.now.Add(time.Hour))
	}
	b.ResetTimer()
	for b.Loop() {
		if r := f.send(dhcpv4.MessageTypeDiscover, mac(250)); r == nil || !r.YourIPAddr.Equal(net.IPv4(192, 168, 50, 254)) {
			b.Fatalf("offer: %v", r)
		}
	}
}
