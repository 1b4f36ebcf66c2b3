package web

import (
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/dhcpd"
	"github.com/officeedge/appliance/internal/dnsfwd"
)

// What floods cost the DHCP server and the DNS forwarder is on /metrics, with fixed reason
// labels (every DHCP reason from the start); nothing of either while it is off.
func TestFloodMetrics(t *testing.T) {
	e := newEnv(t)
	metrics := func() string {
		t.Helper()
		return e.req("GET", "/metrics", lan, "", nil).Body.String()
	}
	if m := metrics(); strings.Contains(m, "appliance_dhcp_") || strings.Contains(m, "appliance_dns_") {
		t.Errorf("/metrics without the parts:\n%s", grep(m, "appliance_d"))
	}
	on := false
	e.s.o.DHCPCounters = func() (dhcpd.Counters, bool) {
		return dhcpd.Counters{Received: 12000, Dropped: 9001, Writes: 3,
			DroppedBy: map[string]uint64{"per_device_limit": 9000, "queue_full": 1}}, on
	}
	e.s.o.DNS = func() (dnsfwd.Stats, bool) {
		return dnsfwd.Stats{Queries: 5000, Limited: 4000, Refused: 7, Busy: 250, Coalesced: 600, Failed: 2}, on
	}
	if m := metrics(); strings.Contains(m, "appliance_dhcp_") || strings.Contains(m, "appliance_dns_") {
		t.Errorf("/metrics with the parts off:\n%s", grep(m, "appliance_d"))
	}
	on = true
	m := metrics()
	for _, want := range []string{
		"# TYPE appliance_dhcp_dropped_total counter",
		"appliance_dhcp_received_total 12000",
		`appliance_dhcp_dropped_total{reason="per_device_limit"} 9000`,
		`appliance_dhcp_dropped_total{reason="queue_full"} 1`,
		`appliance_dhcp_dropped_total{reason="global_limit"} 0`,
		`appliance_dhcp_dropped_total{reason="newcomer_limit"} 0`,
		`appliance_dhcp_dropped_total{reason="new_devices_limit"} 0`,
		`appliance_dhcp_dropped_total{reason="decline"} 0`,
		"appliance_dhcp_lease_file_writes_total 3",
		"# TYPE appliance_dns_busy_total counter",
		"appliance_dns_queries_total 5000",
		`appliance_dns_refused_total{reason="rate_limit"} 4000`,
		`appliance_dns_refused_total{reason="not_served"} 7`,
		"appliance_dns_busy_total 250",
		"appliance_dns_coalesced_total 600",
		"appliance_dns_failed_total 2",
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(m, "appliance_d"))
		}
	}
}
