package main

import (
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/dhcpd/dhcptest"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// TestDaemonServesTheLAN: the real daemon, with [dhcp] switched on, gives a new device on
// the LAN an address with the box as router and DNS server, answers the device's name in
// its DNS, advertises the LAN's IPv6 prefix (the device makes itself an address from it),
// and gives the device the same address after the daemon restarts.
func TestDaemonServesTheLAN(t *testing.T) {
	labtest.RequireRoot(t, append([]string{"dig"}, dhcptest.Tools...)...)
	s := site(t, func(c string) string {
		return c + "\n[dhcp]\nenabled = true\npool = \"192.168.50.100-192.168.50.150\"\ncheck_interval = \"10s\"\n"
	})
	l := s.Lab
	if err := l.AddLANHost("pc1", "02:00:00:00:60:01"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Run("pc1", "sysctl", "-w", "net.ipv6.conf.eth0.accept_ra=2"); err != nil {
		t.Fatal(err)
	}
	d := dhcptest.Dhclient(t, l, "pc1", "pc-one")
	ip := d["new_ip_address"]
	if !strings.HasPrefix(ip, "192.168.50.1") || d["new_routers"] != lab.BoxLAN4 || d["new_domain_name_servers"] != lab.BoxLAN4 {
		t.Errorf("the device got %q, router %q, DNS %q", ip, d["new_routers"], d["new_domain_name_servers"])
	}
	// The box's DNS answers the name the device gave with its lease.
	labtest.WaitFor(t, "pc-one in the box's DNS", 10*time.Second, func() bool {
		out, err := l.Run(lab.HostPhone, "dig", "+short", "+time=1", "+tries=1", "@"+lab.BoxLAN4, "pc-one.office.internal")
		return err == nil && strings.TrimSpace(out) == ip
	})
	labtest.WaitFor(t, "an IPv6 address from the box's advertisement", 30*time.Second, func() bool {
		out, err := l.Run("pc1", "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global", "dynamic")
		return err == nil && strings.Contains(out, "inet6 2001:db8:50:")
	})

	if err := l.Stop(s.Daemon); err != nil {
		t.Log(err)
	}
	restart(t, s)
	// It serves once its DISCOVER found no other server on the LAN.
	if err := s.WaitOutput("dhcp server serving", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if u := dhcptest.Udhcpc(t, l, "pc1", "eth0", "pc-one"); u == nil || u["ip"] != ip || u["serverid"] != lab.BoxLAN4 {
		t.Errorf("after the restart the device got %v from %v, want its lease %s", u["ip"], u["serverid"], ip)
	}
}
