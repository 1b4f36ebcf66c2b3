package dnsfwd_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/officeedge/appliance/integration/dnslab"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/dhcpd/dhcptest"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/wan"
)

// The lab tests run the real appliance in the box of a lab, with a real resolver (unbound)
// at each ISP and real clients (dig) on the LAN and on the internet.

var bin string // the appliance, built once

func TestMain(m *testing.M) { sitelab.Main(m, &bin) }

func startSite(t *testing.T) *sitelab.Site {
	t.Helper()
	labtest.RequireRoot(t, "nft", "conntrack", "unbound", "dig", "chronyd")
	dir := t.TempDir()
	s, err := sitelab.Start(lab.Unique(t), bin, dir, dnslab.Config(), dnslab.Resolvers(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", s.Log())
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// eventually retries ask until it gives want, for at most d.
func eventually(t *testing.T, d time.Duration, what string, want string, ask func() (string, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, err := ask()
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %q (%v), want %q", what, got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOfficeDNS(t *testing.T) {
	s := startSite(t)
	l := s.Lab
	dig := func(args ...string) (string, error) { return dnslab.Dig(l, lab.HostPhone, lab.BoxLAN4, args...) }
	status := func(args ...string) string {
		t.Helper()
		st, err := dnslab.Status(l, lab.HostPhone, lab.BoxLAN4, args...)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// A name only the ISPs' resolvers know, through the FTTC line, over UDP and TCP.
	eventually(t, 5*time.Second, "dig from the LAN", dnslab.FTTCAnswer, func() (string, error) { return dig(dnslab.Name) })
	if got, err := dig("+tcp", dnslab.Name); err != nil || got != dnslab.FTTCAnswer {
		t.Fatalf("dig +tcp from the LAN: %q %v", got, err)
	}
	if got, err := dnslab.Dig(l, lab.HostPhone, lab.BoxLAN6, dnslab.Name); err != nil || got != dnslab.FTTCAnswer {
		t.Fatalf("dig from the LAN to the box's IPv6 address: %q %v", got, err)
	}
	// The ISPs' resolvers answer their own customers only: FTTC refuses the LTE line's
	// network and the other way round (asked across the internet from the other ISP).
	if st, err := dnslab.Status(l, lab.HostLTE, dnslab.FTTCResolver, "-b", lab.LTEGW4, dnslab.Name); err != nil || st != "REFUSED" {
		t.Fatalf("the FTTC resolver asked from the LTE network: %q %v, want REFUSED", st, err)
	}
	if st, err := dnslab.Status(l, lab.HostFTTC, dnslab.LTEResolver, "-b", lab.FTTCGW4, dnslab.Name); err != nil || st != "REFUSED" {
		t.Fatalf("the LTE resolver asked from the FTTC network: %q %v, want REFUSED", st, err)
	}

	// Local names, answered by the box, and their reverse names.
	for name, want := range map[string]string{
		"gateway." + dnslab.Domain: lab.BoxLAN4,
		"pbx." + dnslab.Domain:     lab.PBX4,
		"pbx":                      lab.PBX4,
	} {
		if got, err := dig(name); err != nil || got != want {
			t.Errorf("dig %s: %q %v, want %s", name, got, err, want)
		}
	}
	if got, err := dig("AAAA", "gateway."+dnslab.Domain); err != nil || got != lab.BoxLAN6 {
		t.Errorf("dig AAAA gateway: %q %v", got, err)
	}
	if got, err := dig("-x", lab.PBX4); err != nil || got != "pbx."+dnslab.Domain+"." {
		t.Errorf("dig -x %s: %q %v", lab.PBX4, got, err)
	}
	if got, err := dig("-x", lab.BoxLAN6); err != nil || got != "gateway."+dnslab.Domain+"." {
		t.Errorf("dig -x %s: %q %v", lab.BoxLAN6, got, err)
	}
	if st := status("nobody." + dnslab.Domain); st != "NXDOMAIN" {
		t.Errorf("unknown local name: %s, want NXDOMAIN", st)
	}
	if st := status("-x", "192.168.50.99"); st != "NXDOMAIN" {
		t.Errorf("reverse of an unknown LAN address: %s, want NXDOMAIN (never asked of the ISP)", st)
	}

	// DNS rebinding: a public name answering with a LAN address is refused; an allowed
	// domain's private answer passes.
	if st := status(dnslab.RebindName); st != "REFUSED" {
		t.Errorf("%s (answers %s at the ISP): %s, want REFUSED", dnslab.RebindName, dnslab.RebindAddr, st)
	}
	if got, err := dig(dnslab.AllowedName); err != nil || got != dnslab.AllowedAddr {
		t.Errorf("dig %s (rebind_allow): %q %v", dnslab.AllowedName, got, err)
	}

	// Not an open resolver: from the internet, the uplinks' addresses answer nothing.
	for _, up := range []string{lab.BoxWAN4, lab.BoxLTE4} {
		for _, proto := range []string{"+notcp", "+tcp"} {
			if got, err := dnslab.Dig(l, lab.HostAttacker, up, proto, dnslab.Name); err == nil {
				t.Errorf("the attacker got an answer from %s (%s): %q", up, proto, got)
			}
		}
	}

	// The box's own lookups go through it: the clock found its NTP server by name (the
	// FTTC resolver knows it).
	if err := s.WaitOutput("clock synced with "+dnslab.NTPName, 20*time.Second); err != nil {
		t.Error(err)
	}
	// And the box serves that time to the LAN, one stratum below chronyd's 8.
	r, err := ntp.QueryWithOptions(lab.BoxLAN4, ntp.QueryOptions{Timeout: time.Second,
		Dialer: func(_, remote string) (net.Conn, error) { return l.DialUDP(lab.HostPhone, "", remote) }})
	if err != nil || r.Validate() != nil || r.Stratum != 9 {
		t.Errorf("SNTP from the phone to the box: %v %+v", err, r)
	}

	// The fixed line goes silent: once wan has moved to LTE, the LAN's queries answer
	// again, from the LTE resolver.
	if err := s.Silent(wan.Primary, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitStatus(15*time.Second, "failed over to LTE", func(st wan.Status) bool { return st.Active == wan.Backup }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "dig from the LAN after the failover", dnslab.LTEAnswer, func() (string, error) { return dig(dnslab.Name) })
	if got, err := dig("pbx." + dnslab.Domain); err != nil || got != lab.PBX4 {
		t.Errorf("local name after the failover: %q %v", got, err)
	}
	if !strings.Contains(s.Log(), "dns upstream") {
		t.Errorf("the daemon did not say where DNS goes now")
	}
}

// A device that got its address from the box's DHCP server is found by the host name it
// sent, under the local domain, and by its address.
func TestDHCPHostnames(t *testing.T) {
	labtest.RequireRoot(t, append([]string{"nft", "unbound", "dig", "chronyd"}, dhcptest.Tools...)...)
	dir := t.TempDir()
	cfg := append(dnslab.Config(), []byte("\n[dhcp]\nenabled = true\npool = \"192.168.50.100-192.168.50.199\"\n")...)
	s, err := sitelab.Start(lab.Unique(t), bin, dir, cfg, dnslab.Resolvers(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", s.Log())
		}
		_ = s.Close()
	})
	var lease map[string]string
	for deadline := time.Now().Add(20 * time.Second); lease == nil; {
		if lease = dhcptest.Udhcpc(t, s.Lab, lab.HostPhone, "eth0", "deskphone"); lease == nil && time.Now().After(deadline) {
			t.Fatal("the phone got no DHCP lease")
		}
	}
	ip := lease["ip"]
	dig := func(args ...string) (string, error) { return dnslab.Dig(s.Lab, lab.HostPhone, lab.BoxLAN4, args...) }
	eventually(t, 5*time.Second, "dig deskphone."+dnslab.Domain, ip, func() (string, error) { return dig("deskphone." + dnslab.Domain) })
	if got, err := dig("-x", ip); err != nil || got != "deskphone."+dnslab.Domain+"." {
		t.Errorf("dig -x %s: %q %v", ip, got, err)
	}
}
