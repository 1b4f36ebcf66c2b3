package wan_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/wan"
)

// The lab tests run the real appliance binary in the box namespace of a lab: the daemon
// applies its firewall (the masquerade) and addresses, and the wan part watches both uplinks
// over netlink and real probes. Faults are made in the ISPs' namespaces.

var bin string // the appliance, built once

func TestMain(m *testing.M) { sitelab.Main(m, &bin) }

// traffic is the office's steady traffic during a test: a UDP stream from the phone
// (50 packets/s, like RTP) and SIP OPTIONS every second from the PBX's port 5060.
type traffic struct {
	stream *sitelab.Stream
	sip    *sitelab.SIPPinger
}

// startSite builds a lab running the daemon on config, shows the daemon's log if the test
// fails, and tears it all down at the end.
func startSite(t *testing.T, config []byte, setup ...func(*sitelab.Site) error) *sitelab.Site {
	t.Helper()
	labtest.RequireRoot(t, "nft", "conntrack")
	t.Parallel()
	s, err := sitelab.Start(lab.Unique(t), bin, t.TempDir(), config, setup...)
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

func start(t *testing.T, wanLines ...string) (*sitelab.Site, *traffic) {
	t.Helper()
	s := startSite(t, sitelab.Config(wanLines...))
	tr := &traffic{}
	var err error
	if tr.stream, err = sitelab.StartStream(s.Lab, 50, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.stream.Close)
	if tr.sip, err = sitelab.StartSIPPinger(s.Lab, time.Second, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.sip.Close)
	tr.flowsOn(t, s, wan.Primary, time.Now().Add(-time.Hour))
	return s, tr
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitActive(t *testing.T, s *sitelab.Site, r wan.Role, d time.Duration) wan.Status {
	t.Helper()
	st, err := s.WaitStatus(d, "active "+string(r), func(st wan.Status) bool { return st.Active == r })
	must(t, err)
	return st
}

// flowsOn waits until both office flows run over uplink r (after t0) and checks that no
// conntrack entry of an office flow is left on the other uplink.
func (tr *traffic) flowsOn(t *testing.T, s *sitelab.Site, r wan.Role, t0 time.Time) {
	t.Helper()
	addr := sitelab.Addr[r]
	seq := tr.stream.Sent()
	deadline := time.Now().Add(15 * time.Second)
	for tr.stream.ArrivedFromSince(addr, seq) < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the UDP stream does not arrive over %s (%s)", r, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		if _, ok := tr.sip.FirstFrom(addr, t0); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SIP OPTIONS answer over %s (%s)", r, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	old := sitelab.Addr[map[wan.Role]wan.Role{wan.Primary: wan.Backup, wan.Backup: wan.Primary}[r]]
	n, stale, err := s.StaleFlows(old)
	must(t, err)
	if n != 0 {
		t.Fatalf("%d office flows still masqueraded to the old uplink %s:\n%s", n, old, stale)
	}
}

func TestCarrierLossFailoverAndFailback(t *testing.T) {
	s, tr := start(t, `stability = "2s"`, `hold_down_max = "1m"`)
	t0 := time.Now()
	must(t, s.Carrier(wan.Primary, false))
	st := waitActive(t, s, wan.Backup, 10*time.Second)
	if u := sitelab.Uplink(st, wan.Primary); u.State != wan.Down || !strings.Contains(u.Reason, "carrier") {
		t.Fatalf("primary %s (%s), want down for carrier", u.State, u.Reason)
	}
	if _, ok := sitelab.Event(st, "wan.failover", t0); !ok {
		t.Fatal("no wan.failover event")
	}
	tr.flowsOn(t, s, wan.Backup, t0)

	// The line comes back: traffic returns only after the 2 s stability period.
	t1 := time.Now()
	must(t, s.Carrier(wan.Primary, true))
	st = waitActive(t, s, wan.Primary, 20*time.Second)
	up, _ := sitelab.Event(st, "uplink.up", t1)
	back, ok := sitelab.Event(st, "wan.failback", t1)
	if !ok || back.Sub(up) < 2*time.Second {
		t.Fatalf("failback at %v, primary up at %v: want the 2s stability period between", back, up)
	}
	tr.flowsOn(t, s, wan.Primary, t1)
}

func TestSilentLossFailover(t *testing.T) {
	// Default probe settings: the line goes silent but keeps its carrier.
	s, tr := start(t, `stability = "2s"`)
	t0 := time.Now()
	must(t, s.Silent(wan.Primary, true))
	st := waitActive(t, s, wan.Backup, 15*time.Second)
	u := sitelab.Uplink(st, wan.Primary)
	if u.State != wan.Down || !strings.Contains(u.Reason, "no answer") || !u.Carrier {
		t.Fatalf("primary %s (%s, carrier %v), want down for lost probes with carrier", u.State, u.Reason, u.Carrier)
	}
	tr.flowsOn(t, s, wan.Backup, t0)
	t1 := time.Now()
	must(t, s.Silent(wan.Primary, false))
	waitActive(t, s, wan.Primary, 20*time.Second)
	tr.flowsOn(t, s, wan.Primary, t1)
}

func TestFlappingLineHoldDownDoubles(t *testing.T) {
	s, tr := start(t, `stability = "2s"`, `hold_down_max = "30s"`)
	t0 := time.Now()
	must(t, s.Carrier(wan.Primary, false))
	waitActive(t, s, wan.Backup, 10*time.Second)
	tr.flowsOn(t, s, wan.Backup, t0)
	// The line comes back and dies again before it has been clean for 2 s, twice: each is a
	// flap, and traffic stays on the backup.
	for i := range 2 {
		must(t, s.Carrier(wan.Primary, true))
		_, err := s.WaitStatus(10*time.Second, "primary up", func(st wan.Status) bool { return sitelab.Uplink(st, wan.Primary).State == wan.Up })
		must(t, err)
		must(t, s.Carrier(wan.Primary, false))
		st, err := s.WaitStatus(10*time.Second, "flap counted", func(st wan.Status) bool { return st.Flaps == i+1 })
		must(t, err)
		if st.Active != wan.Backup {
			t.Fatalf("flap %d: traffic went back to the flapping primary", i+1)
		}
	}
	st, err := s.Status()
	must(t, err)
	if st.HoldDown != 8*time.Second {
		t.Fatalf("hold-down %s after 2 flaps, want 8s (2s doubled twice)", st.HoldDown)
	}
	// Stable at last: failback after the 8 s hold-down, not the base 2 s.
	t1 := time.Now()
	must(t, s.Carrier(wan.Primary, true))
	st = waitActive(t, s, wan.Primary, 30*time.Second)
	up, _ := sitelab.Event(st, "uplink.up", t1)
	back, _ := sitelab.Event(st, "wan.failback", t1)
	if back.Sub(up) < 8*time.Second {
		t.Fatalf("failback %s after the primary came up, want at least the 8s hold-down", back.Sub(up))
	}
	tr.flowsOn(t, s, wan.Primary, t1)
}

func TestDeadTargetAndSlowTargetOnlyDegrade(t *testing.T) {
	s, tr := start(t, `stability = "2s"`)
	t0 := time.Now()
	// ICMP to one target dies (rate-limited or filtered): degraded, never down, no switch.
	must(t, s.DropICMP(lab.Probe4, true))
	st, err := s.WaitStatus(15*time.Second, "primary degraded", func(st wan.Status) bool {
		return sitelab.Uplink(st, wan.Primary).State == wan.Degraded
	})
	must(t, err)
	if u := sitelab.Uplink(st, wan.Primary); !strings.Contains(u.Reason, "icmp:"+lab.Probe4) {
		t.Fatalf("degraded for %q, want the dead ICMP target named", u.Reason)
	}
	// A degraded primary keeps the traffic: the metered standby stays at its sparse rate (a
	// silence on the primary refreshes it with a burst, and a down primary speeds it up).
	if u := sitelab.Uplink(st, wan.Backup); u.Probing != "standby" {
		t.Fatalf("backup probing %s while the primary is only degraded, want standby", u.Probing)
	}
	must(t, s.DropICMP(lab.Probe4, false))
	_, err = s.WaitStatus(15*time.Second, "primary up", func(st wan.Status) bool { return sitelab.Uplink(st, wan.Primary).State == wan.Up })
	must(t, err)

	// The DNS target answers slowly (600 ms, under the timeout): degraded, not down.
	s.DNS.SetDelay(600 * time.Millisecond)
	st, err = s.WaitStatus(15*time.Second, "primary degraded by a slow target", func(st wan.Status) bool {
		u := sitelab.Uplink(st, wan.Primary)
		return u.State == wan.Degraded && strings.Contains(u.Reason, "slow")
	})
	must(t, err)
	s.DNS.SetDelay(0)
	_, err = s.WaitStatus(20*time.Second, "primary up", func(st wan.Status) bool { return sitelab.Uplink(st, wan.Primary).State == wan.Up })
	must(t, err)
	st, err = s.Status()
	must(t, err)
	for _, e := range st.Events {
		if e.Time.After(t0) && (e.Kind == "wan.failover" || e.Kind == "uplink.down") {
			t.Fatalf("event %s: %s; a dead or slow target must never take the line down", e.Kind, e.Message)
		}
	}
	if st.Active != wan.Primary {
		t.Fatal("traffic left the primary")
	}
	// The standby is back to sparse probing: its expected data is shown.
	if u := sitelab.Uplink(st, wan.Backup); u.Probing != "standby" || u.StandbyMBMonth <= 0 || u.FullMBMonth <= u.StandbyMBMonth {
		t.Fatalf("backup probing %s at %.1f MB/month (%.1f at full rate), want standby with its figures", u.Probing, u.StandbyMBMonth, u.FullMBMonth)
	}
	tr.flowsOn(t, s, wan.Primary, t0)
}

func TestBothDownThenBackupReturns(t *testing.T) {
	// The standby is probed every 2 s here (40 s by default), so its death shows in seconds.
	s, tr := start(t, `stability = "2s"`, `standby_interval = "2s"`)
	t0 := time.Now()
	must(t, s.Silent(wan.Backup, true))
	_, err := s.WaitStatus(20*time.Second, "backup down", func(st wan.Status) bool { return sitelab.Uplink(st, wan.Backup).State == wan.Down })
	must(t, err)
	must(t, s.Carrier(wan.Primary, false))
	st, err := s.WaitStatus(10*time.Second, "both down", func(st wan.Status) bool { return st.BothDown })
	must(t, err)
	if st.Active != wan.Primary {
		t.Fatal("switched to a dead backup")
	}
	if _, ok := sitelab.Event(st, "wan.both_down", t0); !ok {
		t.Fatal("no wan.both_down event")
	}
	// Both are still probed at full rate; the backup coming back takes the traffic.
	for _, u := range st.Uplinks {
		if u.Probing != "fast" {
			t.Fatalf("%s probed %s while both are down", u.Role, u.Probing)
		}
	}
	t1 := time.Now()
	must(t, s.Silent(wan.Backup, false))
	waitActive(t, s, wan.Backup, 15*time.Second)
	tr.flowsOn(t, s, wan.Backup, t1)
	t2 := time.Now()
	must(t, s.Carrier(wan.Primary, true))
	waitActive(t, s, wan.Primary, 20*time.Second)
	tr.flowsOn(t, s, wan.Primary, t2)
}

func TestManualOverride(t *testing.T) {
	s, tr := start(t, `stability = "2s"`)
	t0 := time.Now()
	must(t, s.Force(wan.ForceBackup))
	st := waitActive(t, s, wan.Backup, 5*time.Second)
	if st.Mode != wan.ForceBackup {
		t.Fatalf("mode %s", st.Mode)
	}
	tr.flowsOn(t, s, wan.Backup, t0)
	// A healthy primary does not take the traffic back while forced, even when it has been
	// clean for twice the stability period.
	must(t, s.WaitOutput("kind=wan.override", time.Second))
	st, err := s.WaitStatus(10*time.Second, "forced for 4s", func(st wan.Status) bool {
		at, ok := sitelab.Event(st, "wan.override", t0)
		return ok && time.Since(at) > 4*time.Second
	})
	must(t, err)
	if st.Active != wan.Backup || sitelab.Uplink(st, wan.Primary).State != wan.Up {
		t.Fatalf("forced backup: active %s, primary %s", st.Active, sitelab.Uplink(st, wan.Primary).State)
	}
	t1 := time.Now()
	must(t, s.Force(wan.ForcePrim))
	waitActive(t, s, wan.Primary, 5*time.Second)
	tr.flowsOn(t, s, wan.Primary, t1)
	must(t, s.Force(wan.Auto))
	if _, err := s.WaitStatus(5*time.Second, "auto", func(st wan.Status) bool { return st.Mode == wan.Auto && st.Active == wan.Primary }); err != nil {
		t.Fatal(err)
	}
	// The CLI does the same through the control socket.
	out, err := exec.Command(bin, "wan", "status", "--control", s.Control).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "active uplink: FTTC (primary), mode auto") || !strings.Contains(string(out), "MB/month on standby") {
		t.Fatalf("wan status: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "wan", "force", "sideways", "--control", s.Control).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not one of auto, primary, backup") {
		t.Fatalf("wan force sideways: %v\n%s", err, out)
	}
}

func TestTrunkDownIsItsOwnAlarm(t *testing.T) {
	s, _ := start(t, `sip_interval = "300ms"`, `sip_down_after = 2`)
	_, err := s.WaitStatus(10*time.Second, "trunk up", func(st wan.Status) bool {
		return len(st.Trunks) == 1 && st.Trunks[0].State == wan.Up && st.Trunks[0].Via == "primary"
	})
	must(t, err)
	t0 := time.Now()
	s.Trunk.Answer(false)
	st, err := s.WaitStatus(10*time.Second, "trunk down", func(st wan.Status) bool { return st.Trunks[0].State == wan.Down })
	must(t, err)
	must(t, s.WaitOutput("kind=trunk.down", 5*time.Second))
	if sitelab.Uplink(st, wan.Primary).State != wan.Up || st.Active != wan.Primary {
		t.Fatal("a silent trunk must not take the uplink down or move traffic")
	}
	s.Trunk.Answer(true)
	st, err = s.WaitStatus(10*time.Second, "trunk up again", func(st wan.Status) bool { return st.Trunks[0].State == wan.Up })
	must(t, err)
	if _, ok := sitelab.Event(st, "trunk.up", t0); !ok {
		t.Fatal("no trunk.up event")
	}
}

func TestDHCPBackupLeaseRenewAndAddressChange(t *testing.T) {
	var dhcp *sitelab.DHCPServer
	s := startSite(t, sitelab.ConfigDHCPBackup(`stability = "2s"`), func(s *sitelab.Site) (err error) {
		// The LTE ISP leases the box its address for 4 s: renewals every 2 s.
		dhcp, err = sitelab.StartDHCP(s.Lab, lab.HostLTE, "cust0", lab.BoxLTE4, lab.LTEGW4, 30, 4*time.Second)
		return err
	})
	t.Cleanup(dhcp.Close)
	st, err := s.Status()
	must(t, err)
	if u := sitelab.Uplink(st, wan.Backup); u.Address != lab.BoxLTE4 || u.Gateway != lab.LTEGW4 {
		t.Fatalf("backup address %s gateway %s, want the lease's %s via %s", u.Address, u.Gateway, lab.BoxLTE4, lab.LTEGW4)
	}
	n := dhcp.Count()
	deadline := time.Now().Add(12 * time.Second)
	// Three renewals take longer than the 4 s lease: the address must still be on the line.
	for dhcp.Count() < n+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the lease was not renewed: %d requests", dhcp.Count())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := s.Lab.Run(lab.HostBox, "ip", "-4", "-o", "addr", "show", "dev", lab.BoxLTEIf)
	must(t, err)
	if !strings.Contains(out, " "+lab.BoxLTE4+"/30 ") {
		t.Fatalf("the renewed lease's address %s expired from %s:\n%s", lab.BoxLTE4, lab.BoxLTEIf, out)
	}
	// The ISP moves the box to another address: it follows at the next renewal, and the
	// office fails over to the new address.
	_, err = s.Lab.Run(lab.HostLTE, "ip", "addr", "add", "203.0.113.5/30", "dev", "cust0")
	must(t, err)
	_, err = s.Lab.Run(lab.HostNet, "ip", "route", "add", "203.0.113.4/30", "via", lab.LTEUp4)
	must(t, err)
	dhcp.Offer("203.0.113.6", "203.0.113.5", 30)
	_, err = s.WaitStatus(15*time.Second, "backup on its new address", func(st wan.Status) bool {
		u := sitelab.Uplink(st, wan.Backup)
		return u.Address == "203.0.113.6" && u.Gateway == "203.0.113.5" && u.State == wan.Up
	})
	must(t, err)
	tr := &traffic{}
	if tr.stream, err = sitelab.StartStream(s.Lab, 50, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.stream.Close)
	if tr.sip, err = sitelab.StartSIPPinger(s.Lab, time.Second, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.sip.Close)
	t0 := time.Now()
	must(t, s.Carrier(wan.Primary, false))
	waitActive(t, s, wan.Backup, 10*time.Second)
	seq := tr.stream.Sent()
	deadline = time.Now().Add(10 * time.Second)
	for tr.stream.ArrivedFromSince("203.0.113.6", seq) < 10 {
		if time.Now().After(deadline) {
			t.Fatal("the stream does not arrive over the DHCP backup's new address")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		if _, ok := tr.sip.FirstFrom("203.0.113.6", t0); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no SIP answer over the DHCP backup's new address")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, stale, err := s.StaleFlows(lab.BoxWAN4); err != nil || n != 0 {
		t.Fatalf("stale office flows on the old uplink (%v):\n%s", err, stale)
	}
}

func TestSlowLine(t *testing.T) {
	// Every probe of this line is a DNS query to one of two resolvers whose answers can be
	// delayed: the whole line gets slow.
	const alt = "192.0.2.54"
	var dns2 *sitelab.DNSServer
	cfg := sitelab.ConfigTargets([]string{"dns:" + lab.Probe4Alt + ":53", "dns:" + alt + ":53"}, `stability = "2s"`)
	s := startSite(t, cfg, func(s *sitelab.Site) (err error) {
		if _, err := s.Lab.Run(lab.HostNet, "ip", "addr", "add", alt+"/32", "dev", "lo"); err != nil {
			return err
		}
		dns2, err = sitelab.StartDNS(s.Lab, lab.HostNet, alt+":53")
		return err
	})
	t.Cleanup(dns2.Close)
	stream, err := sitelab.StartStream(s.Lab, 50, time.Minute)
	must(t, err)
	t.Cleanup(stream.Close)
	t0 := time.Now()
	// 600 ms: slow but answered within the 1 s timeout. Degraded, and the traffic stays.
	s.DNS.SetDelay(600 * time.Millisecond)
	dns2.SetDelay(600 * time.Millisecond)
	st, err := s.WaitStatus(20*time.Second, "primary degraded as slow", func(st wan.Status) bool {
		u := sitelab.Uplink(st, wan.Primary)
		return u.State == wan.Degraded && strings.Count(u.Reason, "slow") == 2
	})
	must(t, err)
	if st.Active != wan.Primary {
		t.Fatal("a slow but working line lost the traffic")
	}
	for _, e := range st.Events {
		if e.Time.After(t0) && e.Kind == "uplink.down" {
			t.Fatalf("a slow line was declared down: %s", e.Message)
		}
	}
	// The office's stream keeps flowing over the slow primary.
	seq := stream.Sent()
	deadline := time.Now().Add(5 * time.Second)
	for stream.ArrivedFromSince(lab.BoxWAN4, seq) < 50 {
		if time.Now().After(deadline) {
			t.Fatal("the stream stopped on the slow primary")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// 1.5 s: beyond the timeout every probe is lost and the line counts as down. The backup
	// reaches the same slow resolvers, so it is down too: the traffic stays where it is
	// (never switch to a dead uplink) and both are reported down.
	s.DNS.SetDelay(1500 * time.Millisecond)
	dns2.SetDelay(1500 * time.Millisecond)
	st, err = s.WaitStatus(20*time.Second, "both down", func(st wan.Status) bool { return st.BothDown })
	must(t, err)
	if st.Active != wan.Primary {
		t.Fatal("switched to a backup that is just as dead")
	}
	s.DNS.SetDelay(0)
	dns2.SetDelay(0)
	_, err = s.WaitStatus(20*time.Second, "both up", func(st wan.Status) bool {
		return sitelab.Uplink(st, wan.Primary).State == wan.Up && sitelab.Uplink(st, wan.Backup).State == wan.Up
	})
	must(t, err)
}

// A clean stop (systemctl stop, an update) hands routing back to the uplinks' own default
// routes: the metric-50 route goes, the metric 100 and 200 ones stay, and the office still
// reaches the internet without the daemon.
func TestCleanStopKeepsUplinkRoutes(t *testing.T) {
	s := startSite(t, sitelab.Config())
	routes := func() string {
		out, err := s.Lab.Run(lab.HostBox, "ip", "-4", "route", "show", "default")
		must(t, err)
		return out
	}
	labtest.WaitFor(t, "the active route", 10*time.Second, func() bool { return strings.Contains(routes(), "metric 50") })
	must(t, s.Daemon.Process.Signal(syscall.SIGTERM))
	_ = s.Lab.Wait(s.Daemon)
	r := routes()
	if strings.Contains(r, "metric 50") || !strings.Contains(r, "metric 100") || !strings.Contains(r, "metric 200") {
		t.Fatalf("default routes after a clean stop:\n%s", r)
	}
	if out, err := s.Lab.Run(lab.HostPBX, "ping", "-c1", "-W2", lab.Trunk4); err != nil {
		t.Fatalf("the office is offline after a clean stop: %v\n%s", err, out)
	}
}

// Connections that come in on the standby uplink are answered through it, with its address:
// the trunk's OPTIONS to the LTE address (forwarded to the PBX), an admin's ping and TCP to
// it, while the FTTC line carries the office. Both ISPs drop packets with a source that is
// not their line's (BCP 38), so a reply that left through the wrong uplink never arrives.
func TestRepliesLeaveThroughTheUplinkTheyCameIn(t *testing.T) {
	var pbx *sitelab.SIPServer
	s := startSite(t, sitelab.Config(), func(s *sitelab.Site) (err error) {
		pbx, err = sitelab.StartSIPServer(s.Lab, lab.HostPBX, lab.PBX4+":5060")
		return err
	})
	t.Cleanup(pbx.Close)
	must(t, s.BCP38(wan.Primary, true))
	must(t, s.BCP38(wan.Backup, true))
	st, err := s.Status()
	must(t, err)
	if st.Active != wan.Primary {
		t.Fatalf("active %s, want the primary", st.Active)
	}
	// The trunk's OPTIONS to the standby's address reach the PBX and its answer comes back
	// from that address.
	c, err := s.Lab.DialUDP(lab.HostTrunk, lab.Trunk4+":5070", lab.BoxLTE4+":5060")
	must(t, err)
	defer c.Close()
	opt := "OPTIONS sip:" + lab.BoxLTE4 + " SIP/2.0\r\nVia: SIP/2.0/UDP " + lab.Trunk4 + ":5070;branch=z9hG4bK-rr;rport\r\nFrom: <sip:trunk@" + lab.Trunk4 +
		">;tag=1\r\nTo: <sip:" + lab.BoxLTE4 + ">\r\nCall-ID: rr@" + lab.Trunk4 + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	buf := make([]byte, 2048)
	answered := false
	for i := 0; i < 10 && !answered; i++ {
		_, err := c.Write([]byte(opt))
		must(t, err)
		must(t, c.SetReadDeadline(time.Now().Add(time.Second)))
		if n, err := c.Read(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
			answered = true
		}
	}
	if !answered {
		t.Fatal("the trunk's OPTIONS to the LTE address got no answer from it")
	}
	// Ping and TCP (the status page) from an admin to the LTE address.
	if out, err := s.Lab.Run(lab.HostAdmin, "ping", "-c2", "-W2", lab.BoxLTE4); err != nil {
		t.Fatalf("ping to the LTE address while FTTC is active: %v\n%s", err, out)
	}
	tc, err := s.Lab.DialTCP(lab.HostAdmin, lab.BoxLTE4+":443", 3*time.Second)
	if err != nil {
		t.Fatalf("TCP to the LTE address while FTTC is active: %v", err)
	}
	tc.Close()
	if n, err := s.Spoofed(wan.Primary); err != nil || n != 0 {
		t.Fatalf("the FTTC ISP dropped %d packets with a source not its own (%v)", n, err)
	}
	// The office's own traffic still leaves through FTTC.
	if out, err := s.Lab.Run(lab.HostPBX, "ping", "-c1", "-W2", lab.Trunk4); err != nil {
		t.Fatalf("the office's ping through FTTC: %v\n%s", err, out)
	}
	// A clean stop removes exactly the rules and tables wan added.
	rules := func() string {
		out, err := s.Lab.Run(lab.HostBox, "ip", "rule", "list")
		must(t, err)
		return out
	}
	if r := rules(); !strings.Contains(r, "lookup 102") || !strings.Contains(r, "fwmark 0x200/0x3f00") {
		t.Fatalf("no reply-routing rule for the LTE uplink:\n%s", r)
	}
	must(t, s.Daemon.Process.Signal(syscall.SIGTERM))
	_ = s.Lab.Wait(s.Daemon)
	if r := rules(); strings.Contains(r, "fwmark") || !strings.Contains(r, "lookup main") {
		t.Fatalf("ip rules after a clean stop:\n%s", r)
	}
	if out, _ := s.Lab.Run(lab.HostBox, "ip", "route", "show", "table", "102"); strings.TrimSpace(out) != "" {
		t.Fatalf("table 102 after a clean stop:\n%s", out)
	}
}

// backupLease waits until the DHCP backup has address addr (and its route) and is up.
func backupLease(t *testing.T, s *sitelab.Site, addr, gw string) {
	t.Helper()
	_, err := s.WaitStatus(15*time.Second, "backup up on "+addr, func(st wan.Status) bool {
		u := sitelab.Uplink(st, wan.Backup)
		return u.Address == addr && u.Gateway == gw && u.State == wan.Up
	})
	must(t, err)
	out, err := s.Lab.Run(lab.HostBox, "ip", "-4", "route", "show", "default", "dev", lab.BoxLTEIf)
	must(t, err)
	if !strings.Contains(out, "via "+gw) || !strings.Contains(out, "metric 200") {
		t.Fatalf("the backup's own default route is not via %s:\n%s", gw, out)
	}
}

// A USB modem that re-enumerates may come back on another network: the lease is asked for
// at once (the lease here lasts an hour, so its renewal would come in 30 minutes), after a
// carrier flap and after the link is deleted and made again.
func TestDHCPReenumeratedModemLeasesAtOnce(t *testing.T) {
	var dhcp *sitelab.DHCPServer
	s := startSite(t, sitelab.ConfigDHCPBackup(`stability = "2s"`), func(s *sitelab.Site) (err error) {
		dhcp, err = sitelab.StartDHCP(s.Lab, lab.HostLTE, "cust0", lab.BoxLTE4, lab.LTEGW4, 30, time.Hour)
		return err
	})
	t.Cleanup(func() { dhcp.Close() })
	backupLease(t, s, lab.BoxLTE4, lab.LTEGW4)
	// The modem's network moves while its carrier is down.
	_, err := s.Lab.Run(lab.HostLTE, "ip", "addr", "add", "203.0.113.5/30", "dev", "cust0")
	must(t, err)
	_, err = s.Lab.Run(lab.HostNet, "ip", "route", "add", "203.0.113.4/30", "via", lab.LTEUp4)
	must(t, err)
	must(t, s.Carrier(wan.Backup, false))
	_, err = s.WaitStatus(10*time.Second, "backup down", func(st wan.Status) bool { return sitelab.Uplink(st, wan.Backup).State == wan.Down })
	must(t, err)
	dhcp.Offer("203.0.113.6", "203.0.113.5", 30)
	must(t, s.Carrier(wan.Backup, true))
	backupLease(t, s, "203.0.113.6", "203.0.113.5")

	// The link goes away and comes back with a new index and no address.
	dhcp.Close()
	must(t, s.RemakeLink(wan.Backup, lab.LTEGW4+"/30", "203.0.113.5/30"))
	dhcp, err = sitelab.StartDHCP(s.Lab, lab.HostLTE, "cust0", lab.BoxLTE4, lab.LTEGW4, 30, time.Hour)
	must(t, err)
	backupLease(t, s, lab.BoxLTE4, lab.LTEGW4)
	// Every probe kind works on the new link (the ICMP socket was bound to the old one).
	st, err := s.Status()
	must(t, err)
	for _, ts := range sitelab.Uplink(st, wan.Backup).Targets {
		if ts.ConsecLost > 0 {
			t.Fatalf("target %s loses probes on the re-made link: %s", ts.Target, ts.LastError)
		}
	}
}

// The lease is kept in the state directory (crash-safe) and its address asked for again
// when the daemon starts.
func TestDHCPLeaseKeptAcrossRestarts(t *testing.T) {
	var dhcp *sitelab.DHCPServer
	s := startSite(t, sitelab.ConfigDHCPBackup(), func(s *sitelab.Site) (err error) {
		dhcp, err = sitelab.StartDHCP(s.Lab, lab.HostLTE, "cust0", lab.BoxLTE4, lab.LTEGW4, 30, time.Hour)
		return err
	})
	t.Cleanup(dhcp.Close)
	backupLease(t, s, lab.BoxLTE4, lab.LTEGW4)
	st, err := s.Status()
	must(t, err)
	if d := sitelab.Uplink(st, wan.Backup).DNS; len(d) != 1 || d[0].String() != lab.LTEGW4 {
		t.Fatalf("backup DNS %v, want the lease's option 6 (%s)", d, lab.LTEGW4)
	}
	if d := sitelab.Uplink(st, wan.Primary).DNS; len(d) != 0 {
		t.Fatalf("static primary DNS %v, want none", d)
	}
	b, err := os.ReadFile(filepath.Join(s.StateDir(), "wan-lease-"+lab.BoxLTEIf+".json"))
	must(t, err)
	if !strings.Contains(string(b), lab.BoxLTE4+"/30") || !strings.Contains(string(b), lab.LTEGW4) {
		t.Fatalf("kept lease:\n%s", b)
	}
	if a := dhcp.Asked(); len(a) == 0 || a[0] != "" {
		t.Fatalf("the first start asked for %q, want no address (nothing kept yet)", a)
	}
	n := len(dhcp.Asked())
	must(t, s.Restart())
	backupLease(t, s, lab.BoxLTE4, lab.LTEGW4)
	if a := dhcp.Asked(); len(a) <= n || a[n] != lab.BoxLTE4 {
		t.Fatalf("after the restart the DISCOVERs asked for %q, want the kept %s first", a[n:], lab.BoxLTE4)
	}
}

// The PBX's registration interval is read from its REGISTERs on their way out (with a
// warning when it is long), and after a failover the trunk's inbound calls reach the PBX
// again once it has registered through the backup.
func TestInboundCallsAfterFailoverAndRegistrationShown(t *testing.T) {
	s, _ := start(t, `stability = "2s"`)
	reg := func(want time.Duration) wan.Status {
		t.Helper()
		st, err := s.WaitStatus(10*time.Second, "registration of "+want.String(), func(st wan.Status) bool {
			return st.Registration != nil && st.Registration.Interval == want
		})
		must(t, err)
		return st
	}
	long, err := sitelab.StartRegistrant(s.Lab, 10*time.Minute)
	must(t, err)
	st := reg(10 * time.Minute)
	if r := st.Registration; r.Via != wan.Primary || r.Registrar != lab.Trunk4+":5060" || !strings.Contains(r.Warning, "up to 10m0s") {
		t.Fatalf("registration %+v, want a warning about 10 minutes via the primary to the trunk", *r)
	}
	long.Close()
	pbx, err := sitelab.StartRegistrant(s.Lab, 2*time.Second)
	must(t, err)
	t.Cleanup(pbx.Close)
	if st = reg(2 * time.Second); st.Registration.Warning != "" {
		t.Fatalf("a 2 s registration is not long: %q", st.Registration.Warning)
	}
	var text bytes.Buffer
	st.WriteText(&text)
	if !strings.Contains(text.String(), "PBX registration: every 2s or less") {
		t.Fatalf("wan status text lacks the registration:\n%s", text.String())
	}
	// The trunk calls the office at its registered address, all along.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for i := 0; ; i++ {
			_ = s.Trunk.Invite(i)
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	if _, err := pbx.WaitInvite(time.Now(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	must(t, s.Silent(wan.Primary, true))
	st = waitActive(t, s, wan.Backup, 15*time.Second)
	tf, _ := sitelab.Event(st, "wan.failover", time.Now().Add(-time.Minute))
	if _, err := pbx.WaitInvite(tf, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if c := s.Trunk.Contact(); c == nil || c.IP.String() != lab.BoxLTE4 {
		t.Fatalf("the trunk's registration is %v, want the LTE address", c)
	}
}

// A noisy primary (5 % random loss each way at its ISP) with one probe target dead and one
// rate-limiting ICMP keeps the traffic: over a minute of it, no silence is taken for a dead
// line. (scripts/bench-failover -soak 30m runs the same for half an hour.)
func TestNoisyLineDoesNotFailOver(t *testing.T) {
	s, tr := start(t, `stability = "2s"`)
	t0 := time.Now()
	must(t, s.Noise(wan.Primary, 5))
	must(t, s.TargetTrouble(true, 1))
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		st, err := s.Status()
		must(t, err)
		for _, e := range st.Events {
			if e.Time.After(t0) && (e.Kind == "wan.failover" || (e.Kind == "uplink.down" && e.Fields["uplink"] == "primary")) {
				t.Fatalf("a noisy but working line failed over: %s", e.Message)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := s.Status()
	must(t, err)
	u := sitelab.Uplink(st, wan.Primary)
	if st.Active != wan.Primary || u.State != wan.Degraded {
		t.Fatalf("after the noisy minute: active %s, primary %s (%s); want the primary, degraded", st.Active, u.State, u.Reason)
	}
	// The metered standby stayed at its sparse rate.
	if b := sitelab.Uplink(st, wan.Backup); b.Probing != "standby" {
		t.Fatalf("backup probed %s while the primary is only noisy", b.Probing)
	}
	must(t, s.Noise(wan.Primary, 0))
	must(t, s.TargetTrouble(false, 0))
	tr.flowsOn(t, s, wan.Primary, t0)
}
