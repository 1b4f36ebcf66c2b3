package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// The box as a whole keeps working when one thing goes wrong: these run the real daemon in
// the namespace lab and make the office's bad days happen.

// site starts the daemon in a lab of its own on the wan lab config, changed by edit.
func site(t *testing.T, edit func(string) string) *sitelab.Site {
	t.Helper()
	labtest.RequireRoot(t, "nft", "sipp", "conntrack")
	cfg := string(sitelab.Config())
	if edit != nil {
		cfg = edit(cfg)
	}
	s, err := sitelab.Start(lab.Unique(t), bin, t.TempDir(), []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", tailLines(s.Log(), 60))
		}
		_ = s.Close()
	})
	return s
}

func tailLines(s string, n int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// siteAlive says whether the daemon's process is still running.
func siteAlive(s *sitelab.Site) bool {
	return s.Daemon.ProcessState == nil && alive(s.Daemon.Process.Pid)
}

func blocklistState(t *testing.T, s *sitelab.Site) netcfg.BlockState {
	t.Helper()
	v, err := s.Client().Blocklist()
	if err != nil {
		t.Fatalf("GET /blocklist: %v", err)
	}
	if v.State == nil {
		t.Fatal("GET /blocklist: no state")
	}
	return *v.State
}

func cliIn(t *testing.T, s *sitelab.Site, args ...string) (string, error) {
	t.Helper()
	return s.Lab.Run(lab.HostBox, append(append([]string{bin}, args...), "--control", s.Control)...)
}

// boxFirewall is a Firewall on the box's namespace, for point lookups of the kernel's blocklist.
func boxFirewall(t *testing.T, s *sitelab.Site) *netcfg.Firewall {
	t.Helper()
	h, err := netns.GetFromName(s.Lab.NS(lab.HostBox))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return netcfg.New(int(h))
}

// scanner sends one SIP OPTIONS with a scanner's User-Agent from the attacker to the box.
func scanner(t *testing.T, s *sitelab.Site, tag string) {
	t.Helper()
	c, err := s.Lab.DialUDP(lab.HostAttacker, lab.Attacker4+":5071", lab.BoxWAN4+":5060")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "OPTIONS sip:100@" + lab.BoxWAN4 + " SIP/2.0\r\nVia: SIP/2.0/UDP " + lab.Attacker4 + ":5071;branch=z9hG4bK" + tag +
		"\r\nFrom: <sip:100@" + lab.Attacker4 + ">;tag=" + tag + "\r\nTo: <sip:100@" + lab.BoxWAN4 + ">\r\nCall-ID: " + tag +
		"\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// pageFrom fetches the status page's /api/status from a lab host (the connection is dialled
// in the host's namespace; http's own dialer would run on another thread, outside it).
func pageFrom(s *sitelab.Site, host, addr string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return s.Lab.DialTCP(host, net.JoinHostPort(addr, "80"), 3*time.Second)
		}}}
	resp, err := c.Get("http://" + addr + "/api/status")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// A LAN cable pulled: the daemon keeps running, a primary failure still fails over, the
// page still answers an admin network on the uplink, and sipguard catches a scanner again
// once the link is back.
func TestLANLinkDown(t *testing.T) {
	// SIP from anyone, so that the attacker's scanner reaches the LAN where sipguard listens.
	s := site(t, func(c string) string {
		return strings.Replace(c, "[pbx]\n", "[pbx]\nallow_sip_from_anywhere = true\n", 1)
	})
	if _, err := s.Lab.Run(lab.HostBox, "ip", "link", "set", lab.BoxLANIf, "down"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitOutput("paused: link down", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, err := pageFrom(s, lab.HostAdmin, lab.BoxWAN4); err != nil || code != 200 && code != 401 {
		t.Fatalf("the page from the admin network with the LAN down: %d %v", code, err)
	}
	if err := s.Carrier(wan.Primary, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitStatus(10*time.Second, "failover to the modem with the LAN down", func(st wan.Status) bool { return st.Active == wan.Backup }); err != nil {
		t.Fatal(err)
	}
	if !siteAlive(s) {
		t.Fatal("the daemon died with the LAN down")
	}
	if err := s.Carrier(wan.Primary, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lab.Run(lab.HostBox, "ip", "link", "set", lab.BoxLANIf, "up"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitOutput("resumed", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	i := 0
	labtest.WaitFor(t, "sipguard to block a scanner after the LAN came back", 15*time.Second, func() bool {
		i++
		scanner(t, s, fmt.Sprintf("lan%d", i))
		_, ok := findEntry(blocklistState(t, s), lab.Attacker4)
		return ok
	})
	if !siteAlive(s) || strings.Contains(s.Log(), "network is down") && !strings.Contains(s.Log(), "paused") {
		t.Fatalf("daemon alive %v", siteAlive(s))
	}
}

func findEntry(st netcfg.BlockState, addr string) (netcfg.Entry, bool) {
	for _, e := range st.Entries {
		if e.Prefix.Addr().String() == addr {
			return e, true
		}
	}
	return netcfg.Entry{}, false
}

// feedSite starts the daemon with list as a community list file.
func feedSite(t *testing.T, list []netip.Prefix) *sitelab.Site {
	t.Helper()
	feed := filepath.Join(t.TempDir(), "big.txt")
	var b strings.Builder
	for _, p := range list {
		b.WriteString(p.String() + "\n")
	}
	if err := os.WriteFile(feed, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return site(t, func(c string) string {
		return c + "\n[[sipguard.feed]]\nname = \"big\"\nfile = \"" + feed + "\"\nformat = \"text\"\ninterval = \"1h\"\n"
	})
}

// A community list of 500,000 addresses and 10,000 networks: the daemon starts with it,
// reloads with it and restarts after SIGKILL with it, every entry in the kernel each time,
// and the trunk's call still gets through.
func TestBigFeedThroughReloadAndKill(t *testing.T) {
	list := lab.Blocklist(500000, 10000)
	s := feedSite(t, list)
	fw := boxFirewall(t, s)
	inKernel := func(when string) {
		t.Helper()
		labtest.WaitFor(t, "all 510,000 entries written "+when, 60*time.Second, func() bool {
			return blocklistState(t, s).Kernel.Total() == len(list)
		})
		found, err := fw.Lookup(list)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != len(list) {
			t.Fatalf("%s: the kernel has %d of the %d entries", when, len(found), len(list))
		}
		trunkCall(t, s)
	}
	inKernel("at start")
	t.Logf("daemon RSS with the list: %s", rss(s.Daemon.Process.Pid))
	reloads := strings.Count(s.Log(), "configuration reloaded")
	if err := s.Daemon.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the reload", 20*time.Second, func() bool { return strings.Count(s.Log(), "configuration reloaded") > reloads })
	inKernel("after a reload")
	if err := s.Daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = s.Lab.Wait(s.Daemon)
	restart(t, s)
	inKernel("after SIGKILL and a restart")
}

// After SIGKILL and a restart with a community list too big for the owner to read back from
// the kernel, the owner writes the list again once and then stays quiet: no more rewrites
// of the whole list while it checks the kernel every 2 s (the bug: one every check, for
// good, because the owner counted commits the kernel had not counted).
func TestQuietAfterKillWithBigFeed(t *testing.T) {
	list := lab.Blocklist(30000, 1000) // over the 20,000 entries the owner reads back
	s := feedSite(t, list)
	labtest.WaitFor(t, "the list written", 60*time.Second, func() bool { return blocklistState(t, s).Kernel.Total() == len(list) })
	if err := s.Daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = s.Lab.Wait(s.Daemon)
	restart(t, s)
	labtest.WaitFor(t, "3 checks of the kernel after the restart", 60*time.Second, func() bool { return blocklistState(t, s).Checks >= 3 })
	st0 := blocklistState(t, s)
	if !strings.Contains(s.Log(), "firewall settled") {
		t.Fatalf("the owner never settled: %d rewrites of the whole list in %d checks", st0.Rewrites, st0.Checks)
	}
	labtest.WaitFor(t, "5 more checks of the kernel", 60*time.Second, func() bool { return blocklistState(t, s).Checks >= st0.Checks+5 })
	st := blocklistState(t, s)
	if n := st.Rewrites - st0.Rewrites; n != 0 || st.Repairs != 0 {
		t.Fatalf("%d rewrites of the whole list (%d repairs) in %d checks after the daemon said it settled", n, st.Repairs, st.Checks-st0.Checks)
	}
	if n := strings.Count(s.Log(), "blocklist rewritten"); n > 1 {
		t.Fatalf("the daemon logged %d rewrites of the whole list after the restart, want at most the one at start", n)
	}
	if st.Kernel.Total() != len(list) {
		t.Fatalf("%d entries written, want %d", st.Kernel.Total(), len(list))
	}
}

// restart runs the daemon again on the site's config and state.
func restart(t *testing.T, s *sitelab.Site) {
	t.Helper()
	dir := filepath.Dir(s.Control)
	cmd, err := s.Lab.Start(lab.HostBox, bin, "run", "--config", filepath.Join(dir, "appliance.toml"), "--state", filepath.Join(dir, "state"), "--control", s.Control)
	if err != nil {
		t.Fatal(err)
	}
	s.Daemon = cmd
	if err := s.WaitOutput("appliance running", 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}

// trunkCall makes one sipp call from the trunk provider through the box to a sipp PBX.
func trunkCall(t *testing.T, s *sitelab.Site) {
	t.Helper()
	s.Trunk.Close() // the OPTIONS responder holds the trunk's port 5060
	uas, err := s.Lab.Start(lab.HostPBX, "sipp", "-sn", "uas", "-i", lab.PBX4, "-p", "5060", "-m", "1", "-nostdin", "-timeout", "30s")
	if err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "sipp's UAS to listen on the PBX", 10*time.Second, func() bool {
		out, _ := s.Lab.Run(lab.HostPBX, "ss", "-Hlun", "sport = :5060")
		return strings.Contains(out, lab.PBX4+":5060")
	})
	if out, err := s.Lab.Run(lab.HostTrunk, "sipp", "-sn", "uac", net.JoinHostPort(lab.BoxWAN4, "5060"), "-i", lab.Trunk4, "-m", "1", "-nostdin", "-timeout", "30s"); err != nil {
		t.Fatalf("the trunk's call failed: %v\n%s\nPBX side:\n%s", err, out, s.Lab.Output(uas))
	}
	if err := s.Lab.Wait(uas); err != nil {
		t.Fatalf("the PBX did not complete the call: %v\n%s", err, s.Lab.Output(uas))
	}
}

// Blocks made while reloads run are all in the kernel afterwards, and a permanent manual
// block stays permanent through reloads and a restart.
func TestBlocksDuringReload(t *testing.T) {
	s := site(t, nil)
	if _, err := cliIn(t, s, "block", "198.18.99.1"); err != nil {
		t.Fatal(err)
	}
	// Traffic from the office counted before the reloads, to see the counters carried over.
	if out, err := s.Lab.Run(lab.HostPBX, "ping", "-c3", "-i0.2", "-W1", lab.BoxLAN4); err != nil {
		t.Fatalf("ping the box: %v %s", err, out)
	}
	counted := ruleHits(t, s.Lab, "blocklist", "not from the internet")
	if counted < 3 {
		t.Fatalf("the office's pings were not counted (%d)", counted)
	}
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 5 && err == nil; i++ {
			err = s.Daemon.Process.Signal(syscall.SIGHUP)
			time.Sleep(50 * time.Millisecond) // spread the reloads over the blocks, not a wait for a result
		}
		done <- err
	}()
	var want []netip.Prefix
	for i := range 20 {
		a := fmt.Sprintf("198.18.100.%d", i)
		if out, err := cliIn(t, s, "block", a, "--for", "1h"); err != nil {
			t.Fatalf("block %s: %v %s", a, err, out)
		}
		want = append(want, netip.MustParsePrefix(a+"/32"))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the reloads", 20*time.Second, func() bool { return strings.Count(s.Log(), "configuration reloaded") >= 1 })
	fw := boxFirewall(t, s)
	check := func(when string) {
		t.Helper()
		found, err := fw.Lookup(append(want, netip.MustParsePrefix("198.18.99.1/32")))
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != len(want)+1 {
			t.Fatalf("%s: %d of %d blocks in the kernel", when, len(found), len(want)+1)
		}
		if perm := found[netip.MustParsePrefix("198.18.99.1/32")]; perm.Expires != 0 {
			t.Fatalf("%s: the permanent block has %s left", when, perm.Expires)
		}
	}
	check("after blocks during reloads")
	if n := ruleHits(t, s.Lab, "blocklist", "not from the internet"); n < counted {
		t.Errorf("the reloads reset a rule's counter: %d packets, %d before", n, counted)
	}
	if err := s.Daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = s.Lab.Wait(s.Daemon)
	if _, err := s.Lab.Run(lab.HostBox, "nft", "delete", "table", "inet", netcfg.TableName); err != nil {
		t.Fatal(err)
	}
	restart(t, s)
	check("after SIGKILL, a lost table and a restart")
}

// Someone flushing the ruleset or deleting the table by hand: within 5 s SSH from the
// attacker is refused again.
func TestFirewallRepairedAfterFlush(t *testing.T) {
	s := site(t, nil)
	labtest.AcceptAndClose(t, s.Lab, lab.HostBox, net.JoinHostPort(lab.BoxWAN4, "22"))
	ssh := func() bool {
		c, err := s.Lab.DialTCP(lab.HostAttacker, net.JoinHostPort(lab.BoxWAN4, "22"), 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if ssh() {
		t.Fatal("SSH open from the internet before anything happened")
	}
	for _, c := range [][]string{{"flush", "ruleset"}, {"delete", "table", "inet", netcfg.TableName}} {
		if _, err := s.Lab.Run(lab.HostBox, append([]string{"nft"}, c...)...); err != nil {
			t.Fatal(err)
		}
		if !ssh() {
			t.Fatalf("nft %s: SSH still refused with no firewall (test setup)", strings.Join(c, " "))
		}
		labtest.WaitFor(t, "SSH from the attacker refused again after nft "+strings.Join(c, " "), 5*time.Second, func() bool { return !ssh() })
	}
	if err := s.WaitOutput("firewall drift repaired", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// What the box depends on can't be blocked by any path: the CLI, a feed or a detector
// fooled by a packet forged from the address; the uplinks stay up.
func TestProtectedNeverBlocked(t *testing.T) {
	feed := filepath.Join(t.TempDir(), "feed.txt")
	if err := os.WriteFile(feed, []byte(lab.Probe4+"\n198.51.100.1\n198.18.5.5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := site(t, func(c string) string {
		c = strings.Replace(c, "[notify]\n", "[notify]\nserver = \"192.0.2.25:587\"\nfrom = \"box@example.com\"\nto = [\"it@example.com\"]\n", 1)
		return c + "\n[[sipguard.feed]]\nname = \"list\"\nfile = \"" + feed + "\"\nformat = \"text\"\ninterval = \"1h\"\n"
	})
	for addr, why := range map[string]string{
		lab.Probe4: "wan probe target", lab.Probe4Alt: "wan probe target", "198.51.100.1": "gateway of uplink",
		"203.0.113.1": "gateway of uplink", "192.0.2.25": "SMTP server", lab.Trunk4: "trusted SIP peer", lab.Admin4: "admin network",
	} {
		out, err := cliIn(t, s, "block", addr)
		if err == nil || !strings.Contains(out, why) {
			t.Errorf("block %s: %v %s, want refused as %s", addr, err, out, why)
		}
	}
	if out, err := cliIn(t, s, "block", "0.0.0.0/1"); err == nil || !strings.Contains(out, "wider than /16") {
		t.Errorf("block 0.0.0.0/1: %v %s, want refused as too wide", err, out)
	}
	labtest.WaitFor(t, "the feed loaded", 10*time.Second, func() bool {
		st := blocklistState(t, s)
		return len(st.Feeds) == 1 && st.Feeds[0].Entries == 1 && st.Feeds[0].Refused == 2
	})
	// A scanner's packet forged from the probe target.
	c, err := s.Lab.DialUDP(lab.HostNet, lab.Probe4+":5072", lab.BoxWAN4+":5060")
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("OPTIONS sip:100@" + lab.BoxWAN4 + " SIP/2.0\r\nVia: SIP/2.0/UDP " + lab.Probe4 + ":5072;branch=z9hG4bKp\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:100@" + lab.BoxWAN4 + ">\r\nCall-ID: forged\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"))
	c.Close()
	if err := s.WaitOutput("protected", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	found, err := boxFirewall(t, s).Lookup([]netip.Prefix{netip.MustParsePrefix(lab.Probe4 + "/32"), netip.MustParsePrefix("198.51.100.1/32")})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Fatalf("protected addresses in the kernel's blocklist: %v", found)
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range st.Uplinks {
		if u.State != wan.Up {
			t.Errorf("uplink %s is %s", u.Name, u.State)
		}
	}
}

// A part made to fail (a GPIO board that is not there, a feed server that never answers) is
// restarted and shown on the page, and failover still works; a reload switches sipguard off
// and on again.
func TestPartsFailAlone(t *testing.T) {
	var hung net.Listener
	s := site(t, func(c string) string {
		c = strings.Replace(c, "[hal]\n", "[hal]\nboard = \"gpio\"\nhealth_pin = \"GPIO17\"\n", 1)
		return c + "\n[[sipguard.feed]]\nname = \"hung\"\nurl = \"http://" + lab.Probe4 + ":8081/list.txt\"\nformat = \"text\"\ninterval = \"1h\"\n"
	})
	var err error
	if hung, err = s.Lab.ListenTCP(lab.HostNet, lab.Probe4+":8081"); err != nil { // accepts, never answers
		t.Fatal(err)
	}
	defer hung.Close()
	labtest.WaitFor(t, "the hal part restarted after failing", 30*time.Second, func() bool {
		return strings.Count(s.Log(), `part failed; restarting it" part=hal`) >= 2
	})
	as, err := s.Client().Alerts()
	if err != nil || !slices.ContainsFunc(as, func(a alerts.Alert) bool { return a.Key == "part.hal" }) {
		t.Fatalf("the alerts do not show the hal part's failure: %v %+v", err, as)
	}
	if err := s.Carrier(wan.Primary, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitStatus(10*time.Second, "failover with a failing part", func(st wan.Status) bool { return st.Active == wan.Backup }); err != nil {
		t.Fatal(err)
	}
	// sipguard off, then on, by reload.
	cfgPath := filepath.Join(filepath.Dir(s.Control), "appliance.toml")
	orig, _ := os.ReadFile(cfgPath)
	reload := func(c string) {
		t.Helper()
		n := strings.Count(s.Log(), "configuration reloaded")
		if err := os.WriteFile(cfgPath, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Daemon.Process.Signal(syscall.SIGHUP)
		labtest.WaitFor(t, "the reload", 20*time.Second, func() bool { return strings.Count(s.Log(), "configuration reloaded") > n })
	}
	reload(strings.Replace(string(orig), "[sipguard]\n", "[sipguard]\nenabled = false\n", 1))
	if out, err := cliIn(t, s, "sipguard", "status"); err == nil || !strings.Contains(out, "sipguard is off") {
		t.Fatalf("sipguard status with sipguard off: %v %s", err, out)
	}
	reload(string(orig))
	if out, err := cliIn(t, s, "sipguard", "status"); err != nil {
		t.Fatalf("sipguard status after switching it on: %v %s", err, out)
	}
	if !siteAlive(s) {
		t.Fatal("the daemon stopped")
	}
}

// A gateway learned by DHCP is protected as soon as the lease gives it.
func TestDHCPGatewayProtected(t *testing.T) {
	labtest.RequireRoot(t, "nft", "sipp", "conntrack")
	var dhcp *sitelab.DHCPServer
	s, err := sitelab.Start(lab.Unique(t), bin, t.TempDir(), sitelab.ConfigDHCPBackup(), func(s *sitelab.Site) (err error) {
		dhcp, err = sitelab.StartDHCP(s.Lab, lab.HostLTE, "cust0", lab.BoxLTE4, lab.LTEGW4, 30, time.Minute)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dhcp.Close(); _ = s.Close() })
	labtest.WaitFor(t, "the DHCP gateway protected", 10*time.Second, func() bool {
		out, err := cliIn(t, s, "block", lab.LTEGW4)
		return err != nil && strings.Contains(out, "the gateway of uplink LTE (as it has it now)")
	})
}

// The page's login goes over HTTPS only: curl pinning the box's own certificate logs in and
// gets a Secure cookie; the same login over plain HTTP is refused; a wrong pin connects to
// nothing.
func TestPageLoginOverPinnedHTTPS(t *testing.T) {
	s := site(t, nil)
	state := filepath.Join(filepath.Dir(s.Control), "state")
	if err := web.SetPassword(state, "lab-password-1"); err != nil {
		t.Fatal(err)
	}
	var pin string
	labtest.WaitFor(t, "the box's certificate", 10*time.Second, func() bool {
		var err error
		pin, err = spkiPin(filepath.Join(state, web.CertFile))
		return err == nil
	})
	// -m 30: a login is an argon2 check of 64 MiB, seconds on a loaded 2-core machine.
	curl := func(args ...string) (string, error) {
		return s.Lab.Run(lab.HostPhone, append([]string{"curl", "-s", "-m", "30", "-o", "/dev/null", "-D", "-", "-w", "code=%{http_code}"}, args...)...)
	}
	login := []string{"-X", "POST", "-H", "Content-Type: application/json", "-d", `{"password":"lab-password-1"}`}
	out, err := curl(append(login, "http://"+lab.BoxLAN4+"/api/login")...)
	if err != nil || !strings.Contains(out, "code=403") || strings.Contains(strings.ToLower(out), "set-cookie") {
		t.Fatalf("a login over plain HTTP: %v\n%s", err, out)
	}
	out, err = curl(append(login, "--pinnedpubkey", pin, "-k", "https://"+lab.BoxLAN4+"/api/login")...)
	if err != nil || !strings.Contains(out, "code=200") {
		t.Fatalf("a login over HTTPS with the pinned certificate: %v\n%s", err, out)
	}
	if c := strings.ToLower(out); !strings.Contains(c, "set-cookie:") || !strings.Contains(c, "secure") || !strings.Contains(c, "strict-transport-security") {
		t.Fatalf("the session cookie is not Secure or HSTS is missing:\n%s", out)
	}
	if out, err := curl("--pinnedpubkey", "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "-k", "https://"+lab.BoxLAN4+"/api/status"); err == nil {
		t.Fatalf("a wrong pin connected:\n%s", out)
	}
}

// spkiPin is curl's --pinnedpubkey for the certificate in a PEM file: sha256// and the
// base64 SHA-256 of its public key.
func spkiPin(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return "", fmt.Errorf("no certificate in %s", path)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		return "sha256//" + base64.StdEncoding.EncodeToString(sum[:]), nil
	}
}
