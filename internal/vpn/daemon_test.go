package vpn_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
)

// TestDaemonServesThePhoneConfig runs the appliance itself with [vpn]: an admin on the LAN
// logs in and downloads alice's config from the page, alice brings it up with wg-quick,
// reaches the PBX's SIP port and asks the box's DNS server through the tunnel, and the page
// and /metrics show her handshake and traffic.
func TestDaemonServesThePhoneConfig(t *testing.T) {
	labtest.RequireRoot(t, "nft", "curl", "wg", "wg-quick", "dig")
	dir := t.TempDir()
	bin, err := build.Daemon(dir)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "lab-password-1"
	if err := web.SetPassword(filepath.Join(dir, "state"), pw); err != nil {
		t.Fatal(err)
	}
	bob, err := wgtypes.GeneratePrivateKey() // bob brings his own key
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(sitelab.Config()) + fmt.Sprintf("\n[vpn]\nenabled = true\ninterface = %q\naddress = \"%s/24\"\nendpoint = %q\ndns = [%q]\n\n[vpn.peers.alice]\naddress = %q\n",
		ifName("d"), boxTun, lab.BoxWAN4, lab.BoxLAN4, aliceTun) + fmt.Sprintf("\n[vpn.peers.bob]\naddress = %q\npublic_key = %q\n", bobTun, bob.PublicKey())
	s, err := sitelab.Start(lab.Unique(t), bin, dir, []byte(cfg))
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
	noDNS := regexp.MustCompile(`(?m)^DNS = .*\n`)
	site.phoneUp(lab.HostRemote, ifName("q"), noDNS.ReplaceAllString(conf, ""))
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

	// `appliance vpn rotate alice` on the box, through the running daemon: alice's phone,
	// tunnel still up with the old config, is cut off at once; the new config works.
	rotated, err := exec.Command(bin, "vpn", "rotate", "alice", "--control", s.Control).Output()
	if err != nil || !strings.Contains(string(rotated), "PrivateKey = ") || string(rotated) == conf {
		t.Fatalf("vpn rotate alice: %v\n%s", err, rotated)
	}
	if reaches(l, lab.HostRemote, lab.PBX4+":5060") {
		t.Error("alice's old config still reaches the PBX after the rotation")
	}
	if out, err := l.Run(lab.HostRemote, "wg-quick", "down", filepath.Join(dir, ifName("q")+".conf")); err != nil {
		t.Fatalf("wg-quick down: %v\n%s", err, out)
	}
	site.phoneUp(lab.HostRemote, ifName("o"), noDNS.ReplaceAllString(string(rotated), ""))
	labtest.WaitFor(t, "alice's new config to reach the PBX", 10*time.Second, func() bool {
		return reaches(l, lab.HostRemote, lab.PBX4+":5060")
	})
	if got := curl(page + "/api/vpn/peer/alice.conf"); got != string(rotated) {
		t.Errorf("the page's config for alice is not the rotated one:\n%s", got)
	}
	// bob holds his own private key: the box has nothing to rotate, and says what to do.
	out, err := exec.Command(bin, "vpn", "rotate", "bob", "--control", s.Control).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "public_key") {
		t.Errorf("vpn rotate bob (own key): %v\n%s", err, out)
	}
	if csv, err := exec.Command(bin, "audit", "export", "--control", s.Control).Output(); err != nil || !strings.Contains(string(csv), "vpn.rotate") {
		t.Errorf("the rotation is not in the audit log: %v\n%s", err, csv)
	}
}
