package dhcpd

import (
	"encoding/hex"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

func init() {
	// Other servers answer within milliseconds in the lab (dnsmasq runs with --no-ping).
	probeTimeout = 500 * time.Millisecond
}

func inPool(t *testing.T, who, ip string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Less(netip.MustParseAddr("192.168.50.100")) || netip.MustParseAddr("192.168.50.150").Less(a) {
		t.Fatalf("%s got %q, not an address of the pool", who, ip)
	}
	return a
}

// TestRealClients: dhclient and udhcpc each get an address of the pool, the box as router,
// DNS and NTP server, and the domain; a desk phone gets its static lease and its
// provisioning URL (options 66 and 160), TFTP server (150) and option 43; the leases and
// the clients' host names are listed. Nothing answers a DISCOVER from an uplink.
func TestRealClients(t *testing.T) {
	s := newSite(t)
	cfg := s.config(dhcpSection)
	s.host("pc1", "")
	s.host("pc2", "")
	s.host("ph1", "80:5e:c0:00:00:21")
	s.host("ph2", "80:5e:c0:00:00:22")
	srv, _ := s.serve(cfg, t.TempDir())
	waitServing(t, srv, true)

	d := s.dhclient("pc1", "pc-one")
	ip1 := inPool(t, "dhclient", d["new_ip_address"])
	for k, want := range map[string]string{"new_routers": lab.BoxLAN4, "new_domain_name_servers": lab.BoxLAN4,
		"new_ntp_servers": lab.BoxLAN4, "new_domain_name": "office.lan", "new_subnet_mask": "255.255.255.0",
		"new_dhcp_server_identifier": lab.BoxLAN4} {
		if d[k] != want {
			t.Errorf("dhclient: %s = %q, want %q", k, d[k], want)
		}
	}
	if d["new_tftp_server_name"] != "" {
		t.Errorf("a PC got a phone's provisioning URL: %q", d["new_tftp_server_name"])
	}

	u := s.udhcpc("pc2", "eth0", "pc-two")
	if u == nil {
		t.Fatal("udhcpc got no lease")
	}
	ip2 := inPool(t, "udhcpc", u["ip"])
	if ip2 == ip1 {
		t.Errorf("two clients got the same address %s", ip1)
	}
	for k, want := range map[string]string{"router": lab.BoxLAN4, "dns": lab.BoxLAN4, "serverid": lab.BoxLAN4, "domain": "office.lan"} {
		if strings.TrimSpace(u[k]) != want {
			t.Errorf("udhcpc: %s = %q, want %q", k, u[k], want)
		}
	}

	// The desk phone with a static lease: its address, its name, and the provisioning URL in
	// options 66 and 160, the TFTP server in 150, option 43.
	p := s.dhclient("ph1", "ignored")
	if p["new_ip_address"] != "192.168.50.21" || p["new_host_name"] != "deskphone" {
		t.Errorf("desk phone got %q named %q, want its static lease 192.168.50.21, deskphone", p["new_ip_address"], p["new_host_name"])
	}
	for k, want := range map[string]string{"new_tftp_server_name": "http://192.168.50.10/prov/", "new_polycom_url": "http://192.168.50.10/prov/",
		"new_tftp_servers": "192.168.50.10", "new_vendor_encapsulated_options": "1:4:c0:a8:32:a"} {
		if p[k] != want {
			t.Errorf("desk phone: %s = %q, want %q", k, p[k], want)
		}
	}
	// Another phone of the same vendor (by its OUI), with busybox: a pool address and the
	// same provisioning. (Busybox checks option 66 as a host name and gives its script
	// "bad" for a URL; phones that take a URL there read it themselves.)
	q := s.udhcpc("ph2", "eth0", "phone-22")
	if q == nil {
		t.Fatal("the second phone got no lease")
	}
	inPool(t, "second phone", q["ip"])
	url := hex.EncodeToString([]byte("http://192.168.50.10/prov/"))
	for k, want := range map[string]string{"opt160": url, "opt150": "c0a8320a", "opt43": "0104c0a8320a"} {
		if q[k] != want {
			t.Errorf("second phone: %s = %q, want %q", k, q[k], want)
		}
	}

	leases := map[string]Lease{}
	for _, l := range srv.Leases() {
		leases[l.IP.String()] = l
	}
	if l := leases[ip1.String()]; l.Hostname != "pc-one" || l.Static || l.Expiry.IsZero() {
		t.Errorf("dhclient's lease listed as %+v", l)
	}
	if l := leases["192.168.50.21"]; !l.Static || l.MAC != "80:5e:c0:00:00:21" || l.Hostname != "deskphone" || l.Expiry.IsZero() {
		t.Errorf("the desk phone's static lease listed as %+v", l)
	}
	names := srv.Hostnames()
	if names["pc-one"] != ip1 || names["pc-two"] != ip2 || names["deskphone"] != netip.MustParseAddr("192.168.50.21") {
		t.Errorf("Hostnames = %v", names)
	}

	// A DISCOVER from the FTTC side reaches the box's wan0: no answer.
	if got := s.udhcpc(lab.HostFTTC, "cust0", "isp"); got != nil {
		t.Errorf("a DISCOVER from the uplink was answered: %v", got)
	}
}

// TestLeasesSurviveRestart: after the server restarts, each device gets its address back
// even when it asks from scratch (a fresh client, no address requested), in any order.
func TestLeasesSurviveRestart(t *testing.T) {
	s := newSite(t)
	cfg := s.config(dhcpSection)
	state := t.TempDir()
	s.host("pc1", "02:00:00:00:50:01")
	s.host("pc2", "02:00:00:00:50:02")
	srv, stop := s.serve(cfg, state)
	waitServing(t, srv, true)
	first := s.dhclient("pc1", "pc-one")["new_ip_address"]
	second := s.udhcpc("pc2", "eth0", "pc-two")["ip"]
	inPool(t, "pc1", first)
	inPool(t, "pc2", second)
	stop()

	srv, _ = s.serve(cfg, state)
	waitServing(t, srv, true)
	// The second device first: a server that forgot would give it the first free address.
	if got := s.dhclient("pc2", "pc-two")["new_ip_address"]; got != second {
		t.Errorf("after the restart pc2 got %s, want its lease %s", got, second)
	}
	if u := s.udhcpc("pc1", "eth0", "pc-one"); u == nil || u["ip"] != first {
		t.Errorf("after the restart pc1 got %v, want its lease %s", u["ip"], first)
	}
	if names := srv.Hostnames(); names["pc-one"].String() != first || names["pc-two"].String() != second {
		t.Errorf("after the restart Hostnames = %v", names)
	}
}

// TestRefusesBesideAnotherServer: while another DHCP server (dnsmasq) answers on the LAN,
// the box hands out nothing and says why in an alert and an event; once it is gone, the
// next check finds the LAN clear and the box serves.
func TestRefusesBesideAnotherServer(t *testing.T) {
	s := newSite(t)
	cfg := s.config(dhcpSection)
	s.host("rogue", "")
	s.host("pc1", "")
	if _, err := s.l.Run("rogue", "ip", "addr", "add", "192.168.50.2/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	startRogue := func() *exec.Cmd {
		dir := s.tempDir("dnsmasq")
		rogue, err := s.l.Start("rogue", "dnsmasq", "--conf-file=/dev/null", "-k", "--log-facility=-", "--port=0",
			"--interface=eth0", "--bind-interfaces", "--dhcp-range=192.168.50.200,192.168.50.210,1h", "--no-ping",
			"--dhcp-leasefile="+dir+"/leases", "--pid-file="+dir+"/pid", "--user=root", "--log-dhcp")
		if err != nil {
			t.Fatal(err)
		}
		return rogue
	}
	rogue := startRogue()
	events, unsub := s.bus.Subscribe(100)
	defer unsub()
	srv, _ := s.serve(cfg, t.TempDir())
	st := waitServing(t, srv, false)
	if st.Other != "192.168.50.2" || !strings.Contains(st.Message, "another DHCP server (192.168.50.2) answers on the LAN") {
		t.Errorf("status while dnsmasq answers: %+v\ndnsmasq: %s", st, s.l.Output(rogue))
	}
	var alert *alerts.Alert
	for _, a := range s.al.List() {
		if a.Key == KeyRefused && a.Active {
			alert = &a
		}
	}
	if alert == nil || !strings.Contains(alert.Message, "192.168.50.2") {
		t.Errorf("no alert naming the other server: %+v", s.al.List())
	}
	labtest.WaitFor(t, "a dhcp.refused event", 5*time.Second, func() bool {
		select {
		case e := <-events:
			return e.Kind == "dhcp.refused" && e.Severity == "alert" && e.Fields["other"] == "192.168.50.2"
		default:
			return false
		}
	})
	// A client on the LAN gets its address from dnsmasq only.
	u := s.udhcpc("pc1", "eth0", "pc-one")
	if u == nil || u["serverid"] != "192.168.50.2" {
		t.Errorf("the client's lease should come from dnsmasq: %v", u)
	}
	if ls := srv.Leases(); len(ls) != 1 || !ls[0].Static || !ls[0].Expiry.IsZero() {
		t.Errorf("the box handed out leases while refusing: %+v", ls)
	}

	if err := s.l.Stop(rogue); err != nil {
		t.Log(err)
	}
	waitServing(t, srv, true)
	for _, a := range s.al.List() {
		if a.Key == KeyRefused && a.Active {
			t.Errorf("alert still active once the other server is gone: %+v", a)
		}
	}
	if u := s.udhcpc("pc1", "eth0", "pc-one"); u == nil || u["serverid"] != lab.BoxLAN4 {
		t.Errorf("once alone on the LAN the box should serve: %v", u)
	}

	// Someone plugs in a router with its own DHCP server: the next check stops the box.
	startRogue()
	if st := waitServing(t, srv, false); st.Other != "192.168.50.2" {
		t.Errorf("status once another server appeared: %+v", st)
	}
}
