package web_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/crowdsec"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/vpn"
	"github.com/officeedge/appliance/internal/web"
)

// The cards behind login in headless Chromium: hidden until the admin logs in, then the VPN's
// peers with their config links and QR codes (shown on request), and what the box shares
// with the fleet's CrowdSec server.
func TestLoggedInCardsInBrowser(t *testing.T) {
	labtest.RequireRoot(t, "chromium")
	// An interface of its own: the page's rotation reconfigures the interface named, were it there.
	cfg, err := config.Parse("example.toml", []byte(strings.Replace(string(config.Example()), "[vpn]\nenabled = false",
		fmt.Sprintf("[vpn]\nenabled = true\ninterface = \"wtb%d\"", os.Getpid()%100000), 1)))
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	v, err := vpn.New(vpn.Options{Config: cfg, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	const password = "lab password 1"
	if err := web.SetPassword(state, password); err != nil {
		t.Fatal(err)
	}
	o := web.Options{Config: func() *config.Config { return cfg }, Bus: events.New(10), Alerts: alerts.New(nil), StateDir: state,
		ReadFirewall: func() web.FirewallState { return web.FirewallState{} },
		VPN:          func() (web.VPN, bool) { return v, true },
		CrowdSec: func() (crowdsec.Status, bool) {
			return crowdsec.Status{URL: "https://lapi.example.net:8080", Pulling: true, Pushing: true, LastPull: time.Now(), Decisions: 1204, Pushed: 3}, true
		}}
	srv := httptest.NewTLSServer(web.New(o).Handler())
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })

	br := exec.Command("chromium", append(chromiumArgs, "--ignore-certificate-errors",
		"--user-data-dir="+filepath.Join(t.TempDir(), "chromium"), "about:blank")...)
	br.Stdout, br.Stderr = io.Discard, io.Discard
	c := launch(t, br)
	if err := c.Open(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	// The page's scripts have run (the status is drawn), so the login form is theirs.
	labtest.WaitFor(t, "the page drawn", 60*time.Second, func() bool { return c.Text("#site") == "Example Office" })
	for _, card := range []string{"vpn-card", "crowdsec-card"} {
		if b, _ := c.Eval(`document.getElementById("` + card + `").classList.contains("hidden")`); string(b) != "true" {
			t.Errorf("%s shows before the login", card)
		}
	}
	c.logIn(t, password)
	labtest.WaitFor(t, "the VPN card after the login", 30*time.Second, func() bool { return strings.Contains(c.Text("#vpn-peers"), "alice_mobile") })
	rows := c.Text("#vpn-peers")
	for _, want := range []string{"10.99.0.2", "not connected", "never", "sip, rtp, provisioning", "config", "QR code"} {
		if !strings.Contains(rows, want) {
			t.Errorf("the VPN table lacks %q: %q", want, rows)
		}
	}
	if got := c.Text("#vpn-state"); !strings.Contains(got, "office.example.net:51820") || !strings.Contains(got, v.PublicKey().String()) {
		t.Errorf("VPN state shown as %q", got)
	}
	labtest.WaitFor(t, "the fleet-sharing card after the login", 30*time.Second, func() bool {
		return strings.Contains(c.Text("#crowdsec"), "1204 address(es)") && strings.Contains(c.Text("#crowdsec"), "3 since start") &&
			strings.Contains(c.Text("#crowdsec-state"), "https://lapi.example.net:8080")
	})
	if _, err := c.Eval(`document.querySelector("#vpn-peers button").click()`); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the QR code to load", 30*time.Second, func() bool {
		b, _ := c.Eval(`(document.querySelector("#vpn-qr img") || {}).naturalWidth > 0`)
		return string(b) == "true"
	})
	// "Rotate key", confirmed by a second click: the new key is the peer's and shown.
	before, _ := v.ClientConfig("alice_mobile")
	for i := 0; i < 2; i++ {
		if _, err := c.Eval(`document.querySelector("#vpn-peers .vpn-rotate").click()`); err != nil {
			t.Fatal(err)
		}
	}
	labtest.WaitFor(t, "the rotation to be shown", 30*time.Second, func() bool { return strings.Contains(c.Text("#vpn-msg"), "has a new key") })
	if after, _ := v.ClientConfig("alice_mobile"); after == before || !strings.Contains(c.Text("#vpn-msg"), v.Status().Peers[0].PublicKey) {
		t.Errorf("the page's rotation: %q; alice's config changed: %v", c.Text("#vpn-msg"), after != before)
	}
	if p := os.Getenv("VPN_SCREENSHOT"); p != "" {
		if _, err := c.Eval(`document.getElementById("vpn-card").scrollIntoView()`); err == nil {
			if png, err := c.Screenshot(); err == nil {
				_ = os.WriteFile(p, png, 0o644)
			}
		}
	}
}
