package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/history"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
)

// historyPage serves the page with st as its history and one uplink over its data budget,
// and opens it in headless Chromium.
func historyPage(t *testing.T, st *history.Store, zone string) *cdp {
	t.Helper()
	labtest.RequireRoot(t, "chromium")
	text := string(config.Example())
	if zone != "" {
		text = "timezone = " + fmt.Sprintf("%q", zone) + "\n" + text
	}
	cfg, err := config.Parse("example.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	start, end := history.Period(now, 1, cfg.Location())
	o := web.Options{Config: func() *config.Config { return cfg }, Bus: events.New(10), Alerts: alerts.New(nil), StateDir: t.TempDir(),
		ReadFirewall: func() web.FirewallState { return web.FirewallState{} },
		History:      func() *history.Store { return st },
		Budgets: func() []history.UplinkUsage {
			return []history.UplinkUsage{{Role: "backup", Name: "LTE", Interface: "usb0", Level: "critical",
				Usage: history.Usage{Budget: 20e9, Used: 21e9, Projected: 40e9, PeriodStart: start, PeriodEnd: end}}}
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
	return c
}

// dataset reads a data- attribute of an element.
func dataset(c *cdp, sel, key string) string {
	v, err := c.Eval(fmt.Sprintf(`((document.querySelector(%q) || {}).dataset || {})[%q] || ""`, sel, key))
	if err != nil {
		return ""
	}
	var s string
	_ = json.Unmarshal(v, &s)
	return s
}

// The History panel in headless Chromium: real charts with the failover drawn, sub-10 ms
// round trips visible, times in the site's zone, the range buttons, drag-to-zoom, and the
// data budget card over budget.
func TestHistoryChartsInBrowser(t *testing.T) {
	st, err := history.Open(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fail := now.Add(-40 * time.Minute)
	for ts := now.Add(-2 * time.Hour); ts.Before(now); ts = ts.Add(history.Step) {
		rtt := 2.5 // a fixed line well under 10 ms: must not draw flat
		if ts.After(fail) {
			rtt = 0
		}
		if rtt > 0 {
			st.Add("uplink/primary/rtt_ms", ts, rtt+float64(ts.Unix()%60)/60)
			st.Add("uplink/primary/loss_pct", ts, 0)
		} else {
			st.Add("uplink/primary/loss_pct", ts, 100)
		}
		st.Add("uplink/backup/rtt_ms", ts, 48)
		st.Add("uplink/backup/loss_pct", ts, 0)
		st.Add("uplink/backup/rx_Bps", ts, 120e3)
		st.Add("target/primary/icmp:192.0.2.1/rtt_ms", ts, 2.4)
		st.Add("sipguard/findings_per_min", ts, 3)
	}
	st.Mark(history.Mark{T: fail, Kind: "wan.failover", Message: "primary down, backup up"})

	c := historyPage(t, st, "Europe/Berlin")
	labtest.WaitFor(t, "the charts to be drawn", 60*time.Second, func() bool { return dataset(c, "#chart-rtt", "marks") != "" })
	if got := dataset(c, "#chart-rtt", "series"); got != "2" {
		t.Errorf("round-trip chart draws %s series, want primary and backup", got)
	}
	for _, id := range []string{"chart-rtt", "chart-loss", "chart-traffic", "chart-targets", "chart-security"} {
		if m := dataset(c, "#"+id, "marks"); m != "1" {
			t.Errorf("%s draws %q failover marks, want 1", id, m)
		}
	}
	if got := c.Text("#history-marks"); !strings.Contains(got, "wan.failover") || !strings.Contains(got, "primary down, backup up") {
		t.Errorf("failover list = %q", got)
	}
	if got := c.Text("#history-zone"); got != "times in Europe/Berlin" {
		t.Errorf("zone shown as %q", got)
	}
	// A 2.4 ms target is drawn on an axis that fits it: no 10 ms floor.
	if y, err := strconv.ParseFloat(dataset(c, "#chart-targets", "ymax"), 64); err != nil || y < 2.4 || y >= 5 {
		t.Errorf("probe-target axis tops at %v (%v), want just above 2.4 ms", y, err)
	}
	if got := c.Text("#budget-backup"); !strings.Contains(got, "21 GB of 20 GB used (105 %)") || !strings.Contains(got, "OVER BUDGET") ||
		!strings.Contains(got, "projected 40 GB") {
		t.Errorf("budget card = %q", got)
	}
	shoot(t, c, "#history-card", "history-24h.png")
	shoot(t, c, "#budget-card", "budget.png")

	// The 1 h button: 10-second points, still with the failover.
	if err := c.Click(`#history-card button[data-span="1h"]`); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the 1 h view", 30*time.Second, func() bool { return strings.HasPrefix(c.Text("#history-state"), "last 1 h, one point per 10 s") })
	if m := dataset(c, "#chart-rtt", "marks"); m != "1" {
		t.Errorf("1 h view draws %q marks", m)
	}
	// Dragging across the chart zooms to that stretch.
	v, _ := c.Eval(`(() => { const e = document.querySelector("#chart-rtt .u-over"); e.scrollIntoView({block: "center"});
		const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()`)
	var r []float64
	if json.Unmarshal(v, &r) != nil || len(r) != 4 {
		t.Fatalf("no plot area: %s", v)
	}
	y := r[1] + r[3]/2
	for _, ev := range []struct {
		typ     string
		x       float64
		buttons int
	}{{"mouseMoved", r[0] + r[2]*0.2, 0}, {"mousePressed", r[0] + r[2]*0.2, 1}, {"mouseMoved", r[0] + r[2]*0.5, 1}, {"mouseMoved", r[0] + r[2]*0.7, 1}, {"mouseReleased", r[0] + r[2]*0.7, 0}} {
		if err := c.Call("Input.dispatchMouseEvent", map[string]any{"type": ev.typ, "x": ev.x, "y": y, "button": "left", "buttons": ev.buttons, "clickCount": 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.HasPrefix(c.Text("#history-state"), "zoomed: 30 min") {
		if time.Now().After(deadline) {
			t.Fatalf("after a drag across half the chart, the view is %q, want zoomed to 30 min", c.Text("#history-state"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	shoot(t, c, "#history-card", "history-zoomed.png")
}
