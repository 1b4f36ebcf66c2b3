package web

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/dhcpd"
)

// The Leases panel's API: the server's state and every lease, over HTTPS only; "off" when
// there is no DHCP server.
func TestLeasesAPI(t *testing.T) {
	e := newEnv(t)
	var got leasesView
	read := func() {
		t.Helper()
		w := e.req("GET", "/api/leases", lan, "", nil)
		if w.Code != 200 {
			t.Fatalf("/api/leases: %d %s", w.Code, w.Body)
		}
		got = leasesView{}
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if got.On || got.Leases == nil {
		t.Errorf("without a DHCP server: %+v", got)
	}
	until := e.now.Add(time.Hour)
	e.s.o.DHCP = func() (dhcpd.Status, bool) {
		return dhcpd.Status{Serving: false, Message: "another DHCP server (192.168.1.2) answers", Other: "192.168.1.2",
			Leases: []dhcpd.Lease{{MAC: "80:5e:c0:00:00:21", IP: netip.MustParseAddr("192.168.1.21"), Hostname: "deskphone", Expiry: until, Static: true}}}, true
	}
	read()
	if !got.On || got.Serving || got.Other != "192.168.1.2" || len(got.Leases) != 1 || got.Leases[0].Hostname != "deskphone" || !got.Leases[0].Expiry.Equal(until) {
		t.Errorf("leases: %+v", got)
	}
	if w := e.plain("GET", "/api/leases", lan, "", nil); w.Code != 302 {
		t.Errorf("/api/leases over plain HTTP: %d, want a redirect to HTTPS", w.Code)
	}
}
