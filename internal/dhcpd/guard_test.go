package dhcpd

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// What one hostile device on the LAN can do with DECLINEs, made-up MACs and host names,
// message by message (the lab flood test sends the same over the wire).

func spoofed(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xee, 0, 0, byte(i >> 8), byte(i)}
}

func (f *fixture) decline(hw net.HardwareAddr, ip string) {
	f.t.Helper()
	f.send(dhcpv4.MessageTypeDecline, hw, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip))))
}

// TestDeclineOnlyWhatWasGiven: a DECLINE counts only for the address the device was offered
// or holds; declines of every other address of the pool change nothing, and the addresses
// held back stay few.
func TestDeclineOnlyWhatWasGiven(t *testing.T) {
	f := newFixture(t, "192.168.50.100-192.168.50.150", "")
	pc := f.lease(mac(1))
	for i := 100; i <= 150; i++ {
		f.decline(mac(2), netip.AddrFrom4([4]byte{192, 168, 50, byte(i)}).String())
	}
	f.decline(mac(2), "192.168.50.21") // the desk phone's static address
	if n := len(f.s.t.declined); n != 0 {
		t.Fatalf("declines of addresses never given to the device held back %d addresses", n)
	}
	if got := f.lease(mac(1)); got != pc {
		t.Errorf("the PC renewing got %q, want its %s", got, pc)
	}
	if got := f.lease(mac(3)); got == "" {
		t.Error("a new device got nothing after the bogus declines")
	}
	// The device that really finds its address in use: held back, the device gets another.
	f.decline(mac(1), pc)
	if _, ok := f.s.t.declined[netip.MustParseAddr(pc)]; !ok {
		t.Fatalf("the lease holder's decline of %s was not taken", pc)
	}
	if got := f.lease(mac(1)); got == pc || got == "" {
		t.Errorf("after declining %s the device got %q", pc, got)
	}
	// Offer, decline, again, from many made-up MACs: the addresses held back stay bounded.
	for i := range 40 {
		if o := f.send(dhcpv4.MessageTypeDiscover, spoofed(i)); o != nil {
			f.decline(spoofed(i), o.YourIPAddr.String())
		}
	}
	if n, most := len(f.s.t.declined), f.s.st.declineMax; n > most {
		t.Errorf("%d addresses held back by declines, at most %d", n, most)
	}
	if got := f.lease(mac(3)); got == "" {
		t.Error("a device with a lease got nothing after the decline cycle")
	}
	f.now = f.now.Add(time.Hour) // the new devices' budget refilled
	if got := f.lease(mac(4)); got == "" {
		t.Error("a new device got nothing an hour after the decline cycle")
	}
}

// TestNewDevicesBounded: devices never seen before get addresses up to new_devices_per_hour,
// then none until the hour refills; devices with a lease, static ones and provisioned phones
// keep theirs meanwhile, and an alert says what happened.
func TestNewDevicesBounded(t *testing.T) {
	f := newFixture(t, "192.168.50.100-192.168.50.199", "")
	f.s.mu.Lock()
	f.s.st.newPerHour = 5
	f.s.newLim = f.s.st.newDeviceLimiter()
	f.s.mu.Unlock()
	pc := f.lease(mac(1)) // 1 of the 5
	got := 0
	for i := range 50 {
		if f.lease(spoofed(i)) != "" {
			got++
		}
	}
	if got != 4 {
		t.Errorf("%d made-up devices got an address, want the 4 left of 5 an hour", got)
	}
	if a := f.lease(mac(1)); a != pc {
		t.Errorf("the PC renewing got %q, want %s", a, pc)
	}
	if a := f.lease(net.HardwareAddr{0x80, 0x5e, 0xc0, 0, 0, 0x21}); a != "192.168.50.21" {
		t.Errorf("the desk phone got %q, want its static 192.168.50.21", a)
	}
	// A device asking for an address straight away (INIT-REBOOT) is a newcomer too.
	if r := f.send(dhcpv4.MessageTypeRequest, spoofed(99), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 50, 190)))); r != nil {
		t.Errorf("a new device's REQUEST over the limit was answered: %v", r)
	}
	var alerted bool
	for _, a := range f.al.List() {
		alerted = alerted || a.Key == KeyNewDevices && a.Active && strings.Contains(a.Message, "new_devices_per_hour")
	}
	if !alerted {
		t.Errorf("no alert about new devices: %+v", f.al.List())
	}
	f.now = f.now.Add(time.Hour)
	if a := f.lease(mac(9)); a == "" {
		t.Error("an hour later a new device still got nothing")
	}
}

// TestNamesDevicesCannotClaim: a client's host name never takes the box's, the PBX's, a
// static lease's, the domain's or a denied name (wpad...), nor one another device's live
// lease holds; the name it may take is exported, and dropped when its lease ends.
func TestNamesDevicesCannotClaim(t *testing.T) {
	f := newFixture(t, "192.168.50.100-192.168.50.150", "")
	named := func(hw net.HardwareAddr, name string) string {
		o := f.send(dhcpv4.MessageTypeDiscover, hw)
		a := f.send(dhcpv4.MessageTypeRequest, hw, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(o.YourIPAddr)),
			dhcpv4.WithOption(dhcpv4.OptHostName(name)))
		if a == nil || a.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("%s asking as %q: %v", hw, name, a)
		}
		return a.YourIPAddr.String()
	}
	for i, n := range []string{"wpad", "WPAD.office.lan", "isatap", "localhost", "gateway", "pbx", "deskphone", "office", "lan"} {
		named(mac(byte(10+i)), n)
	}
	first := named(mac(1), "pc-one")
	named(mac(2), "pc-one")
	names := f.s.Hostnames()
	want := map[string]string{"pc-one": first, "deskphone": "192.168.50.21"}
	if len(names) != len(want) {
		t.Errorf("exported %v, want only %v", names, want)
	}
	for n, a := range want {
		if names[n].String() != a {
			t.Errorf("%s exported as %v, want %s (all: %v)", n, names[n], a, names)
		}
	}
	f.now = f.now.Add(2 * time.Hour) // every lease has ended
	if a, ok := f.s.Hostnames()["pc-one"]; ok {
		t.Errorf("pc-one still exported as %s after its lease ended", a)
	}
}

// TestReadLoopLimits: one MAC's flood is held to its own bucket; 200 made-up MACs share the
// newcomers' budget; a device the server knows still gets through after both.
func TestReadLoopLimits(t *testing.T) {
	f := newFixture(t, "192.168.50.100-192.168.50.150", "")
	pc := [6]byte(mac(1))
	f.lease(mac(1))
	start := time.Now()
	one := 0
	for range 1000 {
		if _, why := f.s.admit([6]byte(mac(2))); why == "" {
			one++
		}
	}
	many := 0
	for i := range 10_000 {
		if _, why := f.s.admit([6]byte(spoofed(i % 200))); why == "" {
			many++
		}
	}
	secs := time.Since(start).Seconds() + 1
	if most := perMACBurst + int(perMACRate*secs); one > most {
		t.Errorf("one MAC's 1000 packets: %d admitted, at most %d", one, most)
	}
	if most := newcomerBurst + int(newcomerRate*secs); many > most {
		t.Errorf("200 made-up MACs' 10000 packets: %d admitted, at most %d", many, most)
	}
	if known, why := f.s.admit(pc); !known || why != "" {
		t.Errorf("a device with a lease was held back (known %v): %s", known, why)
	}
	line := f.s.flood.summary(summaryEvery)
	if !strings.Contains(line, "packets dropped from 201 MACs in the last 10s") {
		t.Errorf("summary: %q", line)
	}
	if again := f.s.flood.summary(summaryEvery); again != "" {
		t.Errorf("a second summary without drops: %q", again)
	}
}

// TestPhonesKeepTheirAddresses: when a full pool must reuse an ended lease, a provisioned
// phone's address goes last, even when the phone's lease ended first.
func TestPhonesKeepTheirAddresses(t *testing.T) {
	f := newFixture(t, "192.168.50.100-192.168.50.102", "")
	phone := net.HardwareAddr{0x80, 0x5e, 0xc0, 0, 0, 0x22}
	ph := f.lease(phone)
	f.now = f.now.Add(time.Minute)
	f.lease(mac(1))
	f.lease(mac(2))
	f.now = f.now.Add(2 * time.Hour) // every lease has ended, the phone's first
	if got := f.lease(mac(9)); got == "" || got == ph {
		t.Errorf("a newcomer got %q, the phone's address is %s", got, ph)
	}
	if got := f.lease(phone); got != ph {
		t.Errorf("the phone came back to %q, want its %s", got, ph)
	}
}
