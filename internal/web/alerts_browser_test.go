package web_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// In headless Chromium, against the lab box's real ruleset: an alert shows what happened,
// since when (in the site's zone) and what to do, and is acknowledged from the page (the
// audit log has it); the LEDs say what they mean; the firewall reads in words; and the
// dropped view lists the attacker whose packets the box turned away.
func TestAlertsAndDroppedInBrowser(t *testing.T) {
	labtest.RequireRoot(t, "chromium", "nft")
	l := labtest.New(t)
	if err := l.ConfigureBox(); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("lab.toml", append([]byte("timezone = \"Europe/Berlin\"\n"), lab.Config...))
	if err != nil {
		t.Fatal(err)
	}
	box, err := netns.GetFromName(l.NS(lab.HostBox))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { box.Close() })
	fw := netcfg.New(int(box))
	if err := fw.Apply(netcfg.Build(cfg)); err != nil {
		t.Fatal(err)
	}

	// The attacker knocks on ports the box does not open: UDP 5099 and TCP 2323.
	conn, err := l.DialUDP(lab.HostAttacker, "", net.JoinHostPort(lab.BoxWAN4, "5099"))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := conn.Write([]byte("knock")); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if c, err := l.DialTCP(lab.HostAttacker, net.JoinHostPort(lab.BoxWAN4, "2323"), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("TCP 2323 from the internet was let through")
	}
	labtest.WaitFor(t, "the box to note the attacker", 10*time.Second, func() bool {
		ws, err := fw.Dropped(10)
		return err == nil && len(ws) == 2 && len(ws[0].Sources) > 0 && ws[0].Sources[0].Key == lab.Attacker4
	})

	dir := t.TempDir()
	al := alerts.New(nil)
	al.Raise(alerts.KeyTollFraud+"/"+lab.Attacker4, "sipguard", "INVITE to +881 from "+lab.Attacker4+" (blocked)")
	board := panelBoard{hal.New(nil, 0), al}
	failback := time.Now().Add(10 * time.Minute) // on the modem, the fixed line healthy again
	log := audit.Open(filepath.Join(dir, "audit.log"))
	if err := web.SetPassword(dir, "alert password 1"); err != nil {
		t.Fatal(err)
	}
	s := web.New(web.Options{Config: func() *config.Config { return cfg }, Bus: events.New(10), Alerts: al, Audit: log, StateDir: dir,
		Board: board, WAN: func() (wan.Status, bool) {
			return wan.Status{Active: wan.Backup, Mode: wan.Auto, FailbackAt: failback}, true
		},
		ReadFirewall: func() web.FirewallState { return web.ReadFirewallIn(int(box)) }, ReadDropped: fw.Dropped})
	srv := httptest.NewTLSServer(s.Handler())
	t.Cleanup(func() {
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

	// The alert: what happened, since when in the site's zone, what to do.
	sel := `.alert.unacked`
	labtest.WaitFor(t, "the alert to show", 60*time.Second, func() bool { return c.Text(sel) != "" })
	got := c.Text(sel)
	for _, want := range []string{"sipguard.tollfraud/" + lab.Attacker4, "INVITE to +881", "What to do: " + alerts.Advice(alerts.KeyTollFraud), "not acknowledged"} {
		if !strings.Contains(got, want) {
			t.Errorf("the alert lacks %q: %q", want, got)
		}
	}
	// Berlin's wall clock, whatever the browser's zone, labelled (GMT+1 or CET in winter).
	berlin := time.Now().In(cfg.Location())
	if !regexp.MustCompile(`since ` + berlin.Format("2006-01-02 15:") + `\d\d:\d\d (GMT\+[12]|CES?T) \(`).MatchString(got) {
		t.Errorf("the alert's time is not in the site's zone (Europe/Berlin), labelled: %q", got)
	}
	if got := c.Text("#version"); !strings.Contains(got, "times in Europe/Berlin") {
		t.Errorf("the page does not say its zone: %q", got)
	}
	if v, _ := c.Eval(`window.applianceZone && window.applianceZone.name`); string(v) != `"Europe/Berlin"` {
		t.Errorf("page zone %s", v)
	}
	if got := c.Text("#alert-led"); got != "Alert LED: lit steadily — A toll-fraud attempt (calls to expensive numbers) was seen." {
		t.Errorf("alert LED line %q", got)
	}
	leds := c.Text("#leds") // printed next to each LED, not a tooltip
	for _, want := range []string{"All is well.", "The office is on the fixed line (primary).", "A toll-fraud attempt", "What to do: Tell the IT person."} {
		if !strings.Contains(leds, want) {
			t.Errorf("the LEDs lack %q: %q", want, leds)
		}
	}
	shoot(t, c, "header", "leds.png")
	shoot(t, c, "#alerts-card", "alert.png")

	// Log in as a person would and acknowledge.
	c.logIn(t, "alert password 1")
	labtest.WaitFor(t, "the Acknowledge button after login", 30*time.Second, func() bool {
		v, _ := c.Eval(`!document.getElementById("ack").classList.contains("hidden")`)
		return string(v) == "true"
	})
	// The force buttons say which mode is in force; the countdown to failback runs.
	if got := c.Text("#force-auto"); got != "Automatic (now)" {
		t.Errorf("force button %q in automatic mode", got)
	}
	if got := c.Text("#force-backup"); got != "Force modem (backup)" {
		t.Errorf("force button %q in automatic mode", got)
	}
	countdown := regexp.MustCompile(`^back to the fixed line in (\d+) min (\d+) s \(at ` + failback.In(cfg.Location()).Format("2006-01-02 15:04:05") + ` `)
	m := countdown.FindStringSubmatch(c.Text("#failback"))
	if m == nil || (m[1] != "9" && m[1] != "10") {
		t.Errorf("failback countdown %q", c.Text("#failback"))
	} else {
		first := c.Text("#failback")
		labtest.WaitFor(t, "the countdown to tick", 10*time.Second, func() bool { return c.Text("#failback") != first })
	}
	if err := c.Click("#ack"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the alert to be greyed as acknowledged", 30*time.Second, func() bool {
		return c.Text(".alert.acked") != "" && c.Text(".alert.unacked") == ""
	})
	if got := c.Text(".alert.acked"); !strings.Contains(got, "· acknowledged") {
		t.Errorf("acknowledged alert reads %q", got)
	}
	if got := c.Text("#alert-led"); got != "Alert LED: dark — No recent attack." {
		t.Errorf("alert LED line after the acknowledgement %q", got)
	}
	shoot(t, c, "#alerts-card", "alert-acked.png")
	es, err := audit.Read(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(es)
	if !strings.Contains(string(b), "alert.acknowledge") || !strings.Contains(string(b), "sipguard.tollfraud/"+lab.Attacker4) {
		t.Errorf("the audit log lacks the acknowledgement: %s", b)
	}

	// Who was dropped, and the firewall in words.
	if got := c.Text("#dropped-sources"); !strings.Contains(got, lab.Attacker4) {
		t.Errorf("the dropped view lacks the attacker: %q", got)
	}
	if got := c.Text("#dropped-udp"); !strings.Contains(got, "5099") {
		t.Errorf("dropped UDP ports %q", got)
	}
	if got := c.Text("#dropped-tcp"); !strings.Contains(got, "2323") {
		t.Errorf("dropped TCP ports %q", got)
	}
	shoot(t, c, "#dropped-card", "dropped-hour.png")
	if err := c.Click("#dropped-day"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the day's view", 10*time.Second, func() bool { return strings.Contains(c.Text("#dropped-summary"), "last day") })
	if got := c.Text("#dropped-sources"); !strings.Contains(got, lab.Attacker4) {
		t.Errorf("the day's dropped view lacks the attacker: %q", got)
	}
	input := c.Text("#chain-input")
	for _, want := range []string{"packets to the box itself", "everything else: dropped", "SSH from admin networks (from the internet, from admin networks, TCP port 22): let through"} {
		if !strings.Contains(input, want) {
			t.Errorf("the input chain lacks %q: %q", want, input)
		}
	}
	if err := c.Click(`#chain-input details.nft`); err != nil {
		t.Fatal(err)
	}
	shoot(t, c, "#firewall-card", "firewall.png")
}

// panelBoard shows a hal.Panel's LEDs with the alert LED lit for an unacknowledged
// toll-fraud alert, as the daemon's hal part drives it (internal/daemon/hal.go).
type panelBoard struct {
	*hal.Panel
	al *alerts.Store
}

func (panelBoard) Name() string     { return "sim" }
func (panelBoard) Press(bool) error { return nil }
func (b panelBoard) LEDs() []hal.LEDState {
	st := hal.State{Started: true, Active: hal.RolePrimary}
	for _, a := range b.al.List() {
		st.TollFraud = st.TollFraud || (!a.Acked && alerts.IsTollFraud(a.Key))
	}
	b.Update(st)
	return b.Panel.LEDs()
}
