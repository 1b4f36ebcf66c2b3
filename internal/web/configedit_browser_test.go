package web_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/officeedge/appliance/integration/dnslab"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
)

// confirmWindow is the daemon's time to confirm a change in this test (2 minutes on a box).
const confirmWindow = 20 * time.Second

// The admin at home, in headless Chromium on the admin's network, runs diagnostics from
// the box through the fixed line (a ping of the ISP's router, a SIP OPTIONS to the trunk, a
// capture that downloads as pcapng), then applies a config that drops the admin's own
// network from admin.networks: the page becomes unreachable, nobody confirms, and the box
// puts the old file back by itself within the window, with the page reachable again, an
// alert and the audit log saying so.
func TestDiagnosticsAndConfigRevertInLab(t *testing.T) {
	labtest.RequireRoot(t, "chromium", "unbound", "chronyd", "dig")
	chromium, _ := exec.LookPath("chromium")
	bin := buildAppliance(t)
	l := labtest.New(t)
	dir := t.TempDir()
	conf, state, control := filepath.Join(dir, "appliance.toml"), filepath.Join(dir, "state"), filepath.Join(dir, "control.sock")
	cfg := withSettings(string(lab.Config), "sip_peers.trunk", `kind = "trunk"`, `networks = ["192.0.2.10", "2001:db8:1::10"]`,
		fmt.Sprintf("options = %q", lab.Trunk4+":5060"))
	// Each ISP's own resolver (unbound), answering the same name differently: a lookup
	// shows which line it went through.
	cfg = withSettings(cfg, "dns.resolvers", fmt.Sprintf("primary = [%q]", dnslab.FTTCResolver), fmt.Sprintf("backup = [%q]", dnslab.LTEResolver))
	if err := dnslab.Resolvers(filepath.Join(dir, "resolvers"))(&sitelab.Site{Lab: l}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	trunk, err := sitelab.StartSIPServer(l, lab.HostTrunk, lab.Trunk4+":5060")
	if err != nil {
		t.Fatal(err)
	}
	defer trunk.Close()
	const password = "lab password 2"
	pw := exec.Command(bin, "web", "passwd", "--state", state, "--control", control)
	pw.Stdin = strings.NewReader(password + "\n")
	if out, err := pw.CombinedOutput(); err != nil {
		t.Fatalf("appliance web passwd: %v\n%s", err, out)
	}
	daemonArgs := []string{bin, "run", "--config", conf, "--state", state, "--control", control, "--confirm-window", confirmWindow.String()}
	d, err := l.Start(lab.HostBox, daemonArgs...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", l.Output(d))
		}
	}()
	page := "https://" + lab.BoxWAN4 + "/"
	fp, spki := boxCert(t, state)
	admin := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: web.PinnedTLS(fp), DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return l.DialTCP(lab.HostAdmin, addr, 2*time.Second)
		}}}
	reachable := func() bool {
		resp, err := admin.Get(page + "api/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	labtest.WaitFor(t, "the page on the fixed line's address from the admin's network", 30*time.Second, reachable)

	br := l.Command(lab.HostAdmin, append(append([]string{chromium}, chromiumArgs...),
		"--ignore-certificate-errors-spki-list="+spki, "--user-data-dir="+filepath.Join(dir, "chromium"), "about:blank")...)
	br.Stdout, br.Stderr = io.Discard, io.Discard
	c := launch(t, br)
	if err := c.Open(page); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the page", 60*time.Second, func() bool { return c.Text("#active-uplink") == "FTTC" })
	c.logIn(t, password)
	visible := func(id string) func() bool {
		return func() bool {
			v, _ := c.Eval(fmt.Sprintf(`(() => { const e = document.getElementById(%q); return !!e && !e.classList.contains("hidden"); })()`, id))
			return string(v) == "true"
		}
	}
	labtest.WaitFor(t, "the Diagnostics card after login", 30*time.Second, func() bool {
		return visible("diag-card")() && strings.Contains(c.Text("#diag-uplink"), "FTTC (wan0)")
	})

	// A ping of the FTTC ISP's router through the fixed line: every reply shows.
	if _, err := c.Eval(`document.getElementById("diag-uplink").value = "primary"; document.getElementById("diag-target").focus()`); err != nil {
		t.Fatal(err)
	}
	if err := c.TypeText(lab.FTTCGW4); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#diag-ping"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the ping's replies on the page", 60*time.Second, func() bool { return strings.Contains(c.Text("#diag-out"), "4 of 4 answered") })
	out := c.Text("#diag-out")
	if !strings.Contains(out, "reply from "+lab.FTTCGW4) || !strings.Contains(out, "via FTTC (wan0)") {
		t.Errorf("ping output:\n%s", out)
	}
	shoot(t, c, "#diag-card", "diag-ping.png")

	// A traceroute to the internet's probe target: the FTTC router first, the target last.
	if _, err := c.Eval(`document.getElementById("diag-target").value = "` + lab.Probe4 + `"`); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#diag-trace"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the traceroute on the page", 60*time.Second, func() bool { return strings.Contains(c.Text("#diag-out"), "answered") })
	if out := c.Text("#diag-out"); !strings.Contains(out, " 1  "+lab.FTTCGW4+" ") || !strings.Contains(out, "  "+lab.Probe4+"  ") {
		t.Errorf("traceroute output:\n%s", out)
	}
	shoot(t, c, "#diag-card", "diag-traceroute.png")

	// A DNS lookup of the same name through each line gets each ISP's answer.
	for _, via := range []struct{ role, answer string }{{"primary", dnslab.FTTCAnswer}, {"backup", dnslab.LTEAnswer}} {
		if _, err := c.Eval(`document.getElementById("diag-uplink").value = "` + via.role + `"; document.getElementById("diag-target").value = "` + dnslab.Name + `"; document.getElementById("diag-qtype").value = "A"`); err != nil {
			t.Fatal(err)
		}
		if err := c.Click("#diag-dns"); err != nil {
			t.Fatal(err)
		}
		labtest.WaitFor(t, "the lookup through the "+via.role+" uplink", 30*time.Second, func() bool {
			out := c.Text("#diag-out")
			return strings.Contains(out, "NOERROR") && strings.Contains(out, "\tA\t"+via.answer)
		})
	}
	shoot(t, c, "#diag-card", "diag-dns.png")
	if _, err := c.Eval(`document.getElementById("diag-uplink").value = "primary"`); err != nil {
		t.Fatal(err)
	}

	// A SIP OPTIONS to the trunk through the fixed line.
	if err := c.Click("#diag-sip"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the trunk's answer on the page", 30*time.Second, func() bool { return strings.Contains(c.Text("#diag-out"), "answered in") })

	// A capture of the fixed line for 3 s (the wan part's probes cross it) downloads as pcapng.
	if _, err := c.Eval(`document.getElementById("diag-iface").value = "wan0"; document.getElementById("diag-seconds").value = "3"`); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#diag-capture"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the capture's download link", 60*time.Second, visible("diag-download"))
	// Downloaded as a person would: a click on the link saves the file.
	downloads := filepath.Join(dir, "downloads")
	if err := c.Call("Page.setDownloadBehavior", map[string]any{"behavior": "allow", "downloadPath": downloads}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#diag-download"); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	labtest.WaitFor(t, "the downloaded capture", 30*time.Second, func() bool {
		ms, _ := filepath.Glob(filepath.Join(downloads, "capture-wan0-*.pcapng"))
		if len(ms) != 1 {
			return false
		}
		raw, err = os.ReadFile(ms[0])
		return err == nil && len(raw) > 0
	})
	ng, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("the capture is not pcapng: %v", err)
	}
	packets := 0
	for {
		if _, _, err := ng.ReadPacketData(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("capture packet %d: %v", packets+1, err)
			}
			break
		}
		packets++
	}
	if packets == 0 {
		t.Errorf("the capture of wan0 holds no packet (%d bytes)", len(raw))
	}
	t.Logf("capture: %d packets, %d bytes; page says %q", packets, len(raw), c.Text("#diag-out"))

	// The config edit: the admin's own network goes from admin.networks. Checked first: the
	// firewall's diff shows the admin sets emptied, and nothing is widened.
	labtest.WaitFor(t, "the Configuration card", 30*time.Second, func() bool {
		v, _ := c.Eval(`document.getElementById("cfg-text").value.includes("[admin]")`)
		return visible("config-card")() && string(v) == "true"
	})
	// A mistake first: the check names the file, line, column and field, and Apply refuses it.
	if _, err := c.Eval(`(() => { const ta = document.getElementById("cfg-text");
		ta.value = ta.value.replace("[admin]\n", "[admin]\nssh_port = 99999\n"); ta.dispatchEvent(new Event("input")); })()`); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#cfg-apply"); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(cfg[:strings.Index(cfg, "[admin]\n")], "\n") + 2
	labtest.WaitFor(t, "the mistake shown with its line and field", 30*time.Second, func() bool {
		return strings.Contains(c.Text("#cfg-errors"), fmt.Sprintf("appliance.toml:%d:12: admin.ssh_port: must be a port number", line))
	})
	shoot(t, c, "#config-card", "config-error.png")
	if b, _ := os.ReadFile(conf); string(b) != cfg {
		t.Fatal("a refused candidate changed the file")
	}
	if _, err := c.Eval(`(() => { const ta = document.getElementById("cfg-text");
		ta.value = ta.value.replace("ssh_port = 99999\n", "").replace('networks = ["192.0.2.30", "2001:db8:1::30"]', 'networks = []');
		ta.dispatchEvent(new Event("input")); })()`); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#cfg-check"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the firewall diff", 30*time.Second, func() bool { return strings.Contains(c.Text("#cfg-diff"), "- \t\telements = { 192.0.2.30 }") })
	if visible("cfg-widening-box")() {
		t.Errorf("dropping an admin network is flagged as widening: %s", c.Text("#cfg-widening"))
	}
	shoot(t, c, "#config-card", "config-check.png")
	if err := c.Click("#cfg-apply"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the page to say the change waits for confirmation", 30*time.Second, func() bool {
		return visible("cfg-pending")() && strings.Contains(c.Text("#cfg-pending-text"), "unless you confirm it")
	})
	shoot(t, c, "#config-card", "config-pending.png")
	applied := time.Now()
	labtest.WaitFor(t, "the page to become unreachable from the admin's network", 20*time.Second, func() bool { return !reachable() })

	// Nobody confirms: the old file is back within the window, and so is the page.
	labtest.WaitFor(t, "the page reachable again (the change put back)", confirmWindow+30*time.Second, reachable)
	t.Logf("reachable again %s after the apply (window %s)", time.Since(applied).Round(time.Second), confirmWindow)
	if b, _ := os.ReadFile(conf); string(b) != cfg {
		t.Errorf("the old config file is not back:\n%s", b)
	}
	if err := c.Open(page); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the revert alert on the page", 60*time.Second, func() bool {
		return strings.Contains(c.Text("#alerts"), "was not confirmed within 20s")
	})
	shoot(t, c, "section:has(#alerts)", "config-reverted-alert.png")
	shoot(t, c, "#config-card", "config-reverted.png")

	// The same change again, and the daemon restarts inside the window: the restarted one
	// still puts the old file back, at the same deadline.
	if _, err := c.Eval(`(() => { const ta = document.getElementById("cfg-text");
		ta.value = ta.value.replace('networks = ["192.0.2.30", "2001:db8:1::30"]', 'networks = []');
		ta.dispatchEvent(new Event("input")); })()`); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#cfg-apply"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the second change to wait for confirmation", 30*time.Second, visible("cfg-pending"))
	labtest.WaitFor(t, "the page unreachable again", 20*time.Second, func() bool { return !reachable() })
	if err := l.Stop(d); err != nil {
		t.Fatal(err)
	}
	if d, err = l.Start(lab.HostBox, daemonArgs...); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the page reachable again after the restart (the change put back)", confirmWindow+30*time.Second, reachable)
	if b, _ := os.ReadFile(conf); string(b) != cfg {
		t.Errorf("the old config file is not back after the restart:\n%s", b)
	}

	es, err := audit.Read(filepath.Join(state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range es {
		seen = append(seen, fmt.Sprintf("%s|%s|%s|%s|%s", e.Via, e.Who, e.What, e.Before, e.After))
	}
	all := strings.Join(seen, "\n")
	for _, want := range []string{
		"web|admin|diag.ping||" + lab.FTTCGW4 + " (" + lab.FTTCGW4 + ") via FTTC",
		"web|admin|diag.capture||wan0 for 3s",
		`config|admin (web ` + lab.Admin4 + `)|config.changed ` + conf + `|networks = ["192.0.2.30", "2001:db8:1::30"]|networks = []`,
		"web|box|config.reverted|edit by admin (web " + lab.Admin4 + ")",
		`config|box (not confirmed within 20s: put back)|config.changed ` + conf + `|networks = []|networks = ["192.0.2.30", "2001:db8:1::30"]`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("audit log lacks %s:\n%s", want, all)
		}
	}
}
