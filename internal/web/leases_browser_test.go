package web_test

import (
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/dhcpd"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
)

// The Leases panel in headless Chromium: it says why the DHCP server does not serve and
// lists the leases, a device's own name as text, never as markup.
func TestLeasesPanelInBrowser(t *testing.T) {
	labtest.RequireRoot(t, "chromium")
	cfg, err := config.Parse("example.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	o := web.Options{Config: func() *config.Config { return cfg }, Bus: events.New(10), Alerts: alerts.New(nil), StateDir: t.TempDir(),
		ReadFirewall: func() web.FirewallState { return web.FirewallState{} }}
	o.DHCP = func() (dhcpd.Status, bool) {
		return dhcpd.Status{Serving: false, Other: "192.168.1.2",
			Message: "not handing out addresses: another DHCP server (192.168.1.2) answers on the LAN",
			Leases: []dhcpd.Lease{
				{MAC: "00:15:65:00:00:10", IP: netip.MustParseAddr("192.168.1.10"), Hostname: "pbx", Static: true},
				{MAC: "02:00:00:00:50:01", IP: netip.MustParseAddr("192.168.1.100"), Hostname: "<b>pc</b>", Expiry: time.Now().Add(11 * time.Hour)},
			}}, true
	}
	srv := httptest.NewTLSServer(web.New(o).Handler())
	t.Cleanup(func() {
		// After the browser is gone; its event stream may outlive it (a helper process that
		// left its group), and Close would wait for it.
		srv.CloseClientConnections()
		srv.Close()
	})

	br := exec.Command("chromium", append(chromiumArgs, "--ignore-certificate-errors",
		"--user-data-dir="+filepath.Join(t.TempDir(), "chromium"), "about:blank")...)
	br.Stdout, br.Stderr = io.Discard, io.Discard
	c := launch(t, br)
	if err := c.Open(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the Leases panel to fill", 60*time.Second, func() bool { return c.Text("#leases-count") == "(2)" })
	if got := c.Text("#dhcp-state"); !strings.Contains(got, "another DHCP server (192.168.1.2)") {
		t.Errorf("state shown as %q", got)
	}
	rows := c.Text("#leases")
	for _, want := range []string{"192.168.1.10", "00:15:65:00:00:10", "pbx", "static", "not seen yet", "192.168.1.100", "<b>pc</b>", "pool"} {
		if !strings.Contains(rows, want) {
			t.Errorf("the leases table lacks %q: %q", want, rows)
		}
	}
	if v, _ := c.Eval(`document.querySelectorAll("#leases b").length`); string(v) != "0" {
		t.Errorf("a host name became markup: %s", v)
	}
	if os.Getenv("LEASES_SCREENSHOT") != "" {
		if png, err := c.Screenshot(); err == nil {
			_ = os.WriteFile(os.Getenv("LEASES_SCREENSHOT"), png, 0o644)
		}
	}
}
