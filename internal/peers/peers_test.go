package peers_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/peers"
)

// A home worker's dynamic-DNS name, served by a real dnsmasq on the internet side with a
// short TTL, and the two addresses it has over the test.
const (
	host    = "phone.dyn.example"
	dnsAddr = lab.Remote4 // dnsmasq listens there
	first   = "192.0.2.81"
	second  = "192.0.2.82"
)

var bin string // the appliance, built once

func TestMain(m *testing.M) { sitelab.Main(m, &bin) }

// A SIP peer named by DNS: SIP from its address passes; the record changes and SIP from the
// new address passes once the TTL has run out while the old one is dropped; DNS goes away
// and the last address stays trusted, with an alert.
func TestPeerByNameFollowsDNS(t *testing.T) {
	labtest.RequireRoot(t, "nft", "dnsmasq")
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	setRecord := func(addr string) {
		if err := os.WriteFile(hosts, []byte(addr+" "+host+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setRecord(first)
	var dnsmasq *os.Process
	startDNS := func(s *sitelab.Site) error {
		cmd, err := s.Lab.Start(lab.HostRemote, "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
			"--addn-hosts="+hosts, "--local-ttl=2", "--listen-address="+dnsAddr, "--bind-interfaces", "--port=53",
			"--user=root", "--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--log-facility=-")
		if err != nil {
			return err
		}
		dnsmasq = cmd.Process
		return nil
	}
	cfg := strings.ReplaceAll(string(sitelab.Config()), `["198.51.100.200"]`, `["`+dnsAddr+`"]`) // the ISPs' resolver
	cfg = strings.Replace(cfg, "[admin]\n", "[sip_peers.home]\nkind = \"office\"\nhosts = [\""+host+"\"]\n\n[admin]\n", 1)
	siteDir := filepath.Join(dir, "site")
	os.MkdirAll(siteDir, 0o700)
	s, err := sitelab.Start(lab.Unique(t), bin, siteDir, []byte(cfg), startDNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", s.Log())
		}
		_ = s.Close()
	})
	for _, a := range []string{first, second} {
		if _, err := s.Lab.Run(lab.HostAttacker, "ip", "addr", "add", a+"/24", "dev", "eth0", "nodad"); err != nil {
			t.Fatal(err)
		}
	}
	pbx, err := s.Lab.ListenUDP(lab.HostPBX, lab.PBX4+":5060")
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	send := func(from, tag string) {
		c, err := s.Lab.DialUDP(lab.HostAttacker, from+":5072", lab.BoxWAN4+":5060")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := "OPTIONS sip:pbx@" + lab.BoxWAN4 + " SIP/2.0\r\nVia: SIP/2.0/UDP " + from + ":5072;branch=z9hG4bK" + tag +
			"\r\nFrom: <sip:home@" + from + ">;tag=" + tag + "\r\nTo: <sip:pbx@" + lab.BoxWAN4 + ">\r\nCall-ID: " + tag +
			"\r\nCSeq: 1 OPTIONS\r\nUser-Agent: Yealink SIP-T46S\r\nContent-Length: 0\r\n\r\n"
		c.Write([]byte(msg))
	}
	// received reads what reached the PBX for a moment and returns the Call-IDs seen.
	received := func() []string {
		var ids []string
		buf := make([]byte, 2048)
		for {
			pbx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := pbx.ReadFromUDP(buf)
			if err != nil {
				return ids
			}
			for _, l := range strings.Split(string(buf[:n]), "\r\n") {
				if id, ok := strings.CutPrefix(l, "Call-ID: "); ok {
					ids = append(ids, id)
				}
			}
		}
	}
	// passes sends from addr until the PBX has it (and reports what else arrived first).
	passes := func(what, from string, d time.Duration) (before []string) {
		t.Helper()
		i := 0
		labtest.WaitFor(t, what, d, func() bool {
			i++
			tag := fmt.Sprintf("%s-%d", strings.ReplaceAll(from, ".", "-"), i)
			send(from, tag)
			for _, id := range received() {
				if id == tag {
					return true
				}
				before = append(before, id)
			}
			return false
		})
		return before
	}
	passes("SIP from the name's address to reach the PBX", first, 20*time.Second)

	setRecord(second)
	if err := dnsmasq.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	passes("SIP from the name's new address, once its TTL ran out", second, peers.MinTTL+10*time.Second)
	// The old address is out now: its packet, sent first, never arrives before the new one's.
	send(first, "old-after-change")
	if got := passes("a marker from the new address", second, 10*time.Second); strings.Contains(strings.Join(got, " "), "old-after-change") {
		t.Errorf("SIP from the old address %s reached the PBX after the record changed", first)
	}

	// DNS goes away: the last address stays trusted, and an alert says so.
	dnsmasq.Kill()
	labtest.WaitFor(t, "an alert that the name does not resolve", peers.MinTTL+15*time.Second, func() bool {
		list, err := s.Client().Alerts()
		if err != nil {
			return false
		}
		for _, a := range list {
			if a.Active && strings.HasPrefix(a.Key, "peers.resolve.") && strings.Contains(a.Message, second) {
				return true
			}
		}
		return false
	})
	passes("SIP from the last good address while DNS is down", second, 10*time.Second)
	var names []peers.Name
	err = s.Client().GetJSON(control.PathPeersStatus, &names)
	if err != nil || len(names) != 1 || names[0].Host != host ||
		len(names[0].Addrs) != 1 || names[0].Addrs[0].String() != second || names[0].Error == "" {
		t.Errorf("/peers/status: %+v (%v), want %s at %s with the lookup's error", names, err, host, second)
	}
	out, err := s.Lab.Run(lab.HostBox, bin, "check", "--config", filepath.Join(siteDir, "appliance.toml"), "--control", s.Control)
	if err != nil || !strings.Contains(out, host+" (sip_peers.home): "+second) {
		t.Errorf("appliance check: %v\n%s\nwant %s listed with %s", err, out, host, second)
	}
}
