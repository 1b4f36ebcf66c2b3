package vpn_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
	"github.com/officeedge/appliance/wan/wanlab"
)

// TestDaemonServesThePhoneConfig runs the appliance itself with [vpn]: an admin on the LAN
// logs in and downloads alice's config from the page, alice brings it up with wg-quick,
// reaches the PBX's SIP port and asks the box's DNS server through the tunnel, and the page
// and /metrics show her handshake and traffic.
func TestDaemonServesThePhoneConfig(t *testing.T) {
	labtest.RequireRoot(t, "nft", "curl", "wg", "wg-quick", "dig")
	dir := t.TempDir()
	bin, err := wanlab.BuildDaemon(dir)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "lab-password-1"
	if err := web.SetPassword(filepath.Join(dir, "state"), pw); err != nil {
		t.Fatal(err)
	}
	cfg := string(wanlab.Config()) + fmt.Sprintf("\n[vpn]\nenabled = true\ninterface = %q\naddress = \"%s/24\"\nendpoint = %q\ndns = [%q]\n\n[vpn.peers.alice]\naddress = %q\n",
		ifName("d"), boxTun, lab.BoxWAN4, lab.BoxLAN4, aliceTun)
	s, err := wanlab.Start(lab.Unique(t), bin, dir, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	l := s.Lab
	if err := s.WaitOutput("vpn: interface up", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Log(), "implementation=userspace") {
		t.Errorf("the daemon does not say it runs WireGuard in user space:\n%s", s.Log())
	}

	jar := filepath.Join(dir, "cookies")
	curl := func(args ...string) string {
		t.Helper()
		out, err := l.Run(lab.HostPhone, append([]string{"curl", "-sS", "-k", "-m", "5", "-b", jar, "-c", jar}, args...)...)
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return out
	}
	page := "https://" + lab.BoxLAN4
	curl("-X", "POST", "-H", "Content-Type: application/json", "-d", `{"password":"`+pw+`"}`, page+"/api/login")
	conf := curl(page + "/api/vpn/peer/alice.conf")
	if !strings.Contains(conf, "[Interface]") || !strings.Contains(conf, "PrivateKey = ") {
		t.Fatalf("the page's config for alice:\n%s", conf)
	}
	if png := curl(page + "/api/vpn/peer/alice/qr.png"); !strings.HasPrefix(png, "\x89PNG") {
		t.Errorf("the page's QR code is not a PNG")
	}

	if !strings.Contains(conf, "DNS = "+lab.BoxLAN4+"\n") {
		t.Errorf("alice's config does not name the box as her DNS server:\n%s", conf)
	}
	// wg-quick hands a DNS line to resolvconf, which would rewrite this machine's own
	// resolv.conf (the lab's namespaces share it): the phone's app does that part on a phone.
	site := &site{t: t, l: l, dir: dir}
	site.phoneUp(lab.HostRemote, ifName("q"), regexp.MustCompile(`(?m)^DNS = .*\n`).ReplaceAllString(conf, ""))
	labtest.AcceptAndClose(t, l, lab.HostPBX, lab.PBX4+":5060")
	labtest.WaitFor(t, "alice to reach the PBX's SIP port through the tunnel", 10*time.Second, func() bool {
		return reaches(l, lab.HostRemote, lab.PBX4+":5060")
	})
	// The box's DNS forwarder answers the phone through the tunnel (its LAN address).
	labtest.WaitFor(t, "the box's DNS server to answer alice through the tunnel", 10*time.Second, func() bool {
		out, _ := l.Run(lab.HostRemote, "dig", "+short", "+time=2", "+tries=1", "@"+lab.BoxLAN4, "gateway.office.internal", "A")
		return strings.TrimSpace(out) == lab.BoxLAN4
	})
	if st := curl(page + "/api/vpn"); !regexp.MustCompile(`"endpoint": "`+regexp.QuoteMeta(lab.Remote4)+`:\d+"`).MatchString(st) ||
		!strings.Contains(st, `"last_handshake": "`) || !strings.Contains(st, `"implementation": "userspace"`) {
		t.Errorf("the page does not show alice connected:\n%s", st)
	}
	m := curl("http://" + lab.BoxLAN4 + "/metrics")
	for _, re := range []string{`appliance_vpn_up\{implementation="userspace"\} 1`, `appliance_vpn_peer_received_bytes_total\{peer="alice"\} [1-9]`,
		`appliance_vpn_peer_last_handshake_seconds\{peer="alice"\} `} {
		if !regexp.MustCompile(re).MatchString(m) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	if key, err := os.ReadFile(filepath.Join(dir, "state", "vpn", "box.key")); err != nil || strings.Contains(s.Log(), strings.TrimSpace(string(key))) {
		t.Errorf("the box's private key is in the daemon's log (or unreadable: %v)", err)
	}
	if out, err := l.Run(lab.HostBox, bin, "kernel-features"); err != nil || !strings.Contains(out, "MISSING  wireguard: no kernel WireGuard: the VPN ([vpn]) runs on the user-space implementation") {
		t.Errorf("kernel-features: %v\n%s", err, out)
	}
}
