package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/history"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
)

// The history and the data budget with the real daemon in the lab: the fixed line's cable
// is pulled, the failover is drawn on the chart in Chromium, the office pushes 3 MB through
// the modem over its 1 MB budget and the alert comes; after a restart of the daemon the
// chart still has the failover and the earlier figures, and the period's use is kept.
func TestHistoryAndBudgetInLab(t *testing.T) {
	labtest.RequireRoot(t, "chromium")
	bin := buildAppliance(t)
	l := labtest.New(t)
	dir := t.TempDir()
	conf, state, control := filepath.Join(dir, "appliance.toml"), filepath.Join(dir, "state"), filepath.Join(dir, "control.sock")
	cfg := withSettings(string(lab.Config), "wan", `targets = ["icmp:`+lab.Probe4+`", "tcp:`+lab.Probe4+`:80"]`)
	cfg = withSettings(cfg, "uplink.backup", `data_budget = "1MB"`, `billing_day = 31`)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		d, err := l.Start(lab.HostBox, bin, "run", "--config", conf, "--state", state, "--control", control)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := start()
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", l.Output(d))
		}
	}()
	// The phone on the LAN asks the page's API over HTTPS, pinning the box's certificate.
	fp, spki := boxCert(t, state)
	phone := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: web.PinnedTLS(fp),
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return l.DialTCP(lab.HostPhone, addr, 3*time.Second)
		}}}
	page := "https://" + lab.BoxLAN4 + "/"
	get := func(path string, v any) bool {
		resp, err := phone.Get(page + path)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(v) == nil
	}
	var st struct {
		Active string `json:"active_uplink"`
		Alerts []struct {
			Key     string `json:"key"`
			Message string `json:"message"`
			Active  bool   `json:"active"`
		} `json:"alerts"`
	}
	labtest.WaitFor(t, "the fixed line carrying traffic", 60*time.Second, func() bool { return get("api/status", &st) && st.Active == "FTTC" })
	// Figures of the fixed line before the failover, to find again after the restart.
	var hv web.HistoryView
	labtest.WaitFor(t, "the fixed line's round trips in the history", 60*time.Second, func() bool {
		return get("api/history?series=uplink/primary/rtt_ms", &hv) && len(hv.Series["uplink/primary/rtt_ms"]) > 0
	})

	// The fixed line's cable is pulled (the ISP side goes down): a failover.
	if _, err := l.Run(lab.HostFTTC, "ip", "link", "set", "cust0", "down"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the failover to the modem", 60*time.Second, func() bool { return get("api/status", &st) && st.Active == "LTE" })
	labtest.WaitFor(t, "the failover in the history", 30*time.Second, func() bool {
		return get("api/history", &hv) && hasMark(hv.Marks, "wan.failover")
	})

	// The office sends 3 MB to the internet through the modem.
	ln, err := l.ListenTCP(lab.HostAdmin, lab.Admin4+":9099")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	conn, err := l.DialTCP(lab.HostPhone, lab.Admin4+":9099", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(make([]byte, 3_000_000)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := <-got; n != 3_000_000 {
		t.Fatalf("the internet host got %d bytes, want 3000000", n)
	}
	var budget []history.UplinkUsage
	labtest.WaitFor(t, "the data budget alert", 60*time.Second, func() bool {
		if !get("api/status", &st) {
			return false
		}
		for _, a := range st.Alerts {
			if a.Key == "wan.budget.backup" && a.Active && strings.Contains(a.Message, "of its 1 MB data budget") {
				return true
			}
		}
		return false
	})
	if !get("api/budget", &budget) || len(budget) != 1 || budget[0].Used < 3_000_000 || budget[0].Level != "critical" || budget[0].Projected < budget[0].Used {
		t.Fatalf("budget = %+v, want the backup over its 1 MB with the 3 MB counted", budget)
	}
	var metrics string
	if resp, err := phone.Get(page + "metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(b)
	}
	for _, want := range []string{`appliance_data_budget_bytes{role="backup",uplink="LTE"} 1e+06`, `appliance_data_used_bytes{role="backup",uplink="LTE"}`, `appliance_data_projected_bytes{role="backup",uplink="LTE"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The chart in Chromium on the phone shows the failover and the card the budget.
	chromium, _ := exec.LookPath("chromium")
	br := l.Command(lab.HostPhone, append(append([]string{chromium}, chromiumArgs...),
		"--ignore-certificate-errors-spki-list="+spki, "--user-data-dir="+filepath.Join(dir, "chromium"), "about:blank")...)
	br.Stdout, br.Stderr = io.Discard, io.Discard
	c := launch(t, br)
	openCharts := func(what string) {
		t.Helper()
		if err := c.Open(page); err != nil {
			t.Fatal(err)
		}
		labtest.WaitFor(t, "the history panel's 15 min view", 60*time.Second, func() bool {
			return c.Click(`#history-card button[data-span="15m"]`) == nil && strings.HasPrefix(c.Text("#history-state"), "last 15 min")
		})
		labtest.WaitFor(t, what, 60*time.Second, func() bool {
			return num(dataset(c, "#chart-rtt", "marks")) >= 1 && num(dataset(c, "#chart-rtt", "points")) > 0 &&
				strings.Contains(c.Text("#history-marks"), "wan.failover")
		})
	}
	openCharts("the failover drawn on the round-trip chart")
	if got := c.Text("#budget-backup"); !strings.Contains(got, "of 1.0 MB used") || !strings.Contains(got, "OVER BUDGET") {
		t.Errorf("budget card = %q", got)
	}
	shoot(t, c, "#history-card", "lab-history-failover.png")
	shoot(t, c, "#budget-card", "lab-budget.png")

	// A restart of the daemon keeps the history and the period's use.
	stopped := time.Now()
	if err := l.Stop(d); err != nil {
		t.Logf("stop: %v", err)
	}
	d = start()
	labtest.WaitFor(t, "the daemon back, on the modem", 60*time.Second, func() bool { return get("api/status", &st) && st.Active == "LTE" })
	var after web.HistoryView
	if !get(fmt.Sprintf("api/history?series=uplink/primary/rtt_ms&from=%d", stopped.Add(-time.Hour).Unix()), &after) ||
		!hasMark(after.Marks, "wan.failover") || len(after.Series["uplink/primary/rtt_ms"]) == 0 ||
		after.Series["uplink/primary/rtt_ms"][0].T > stopped.Unix() {
		t.Fatalf("after the restart the history is %+v, want the failover and the fixed line's figures from before", after)
	}
	labtest.WaitFor(t, "the period's use kept across the restart", 30*time.Second, func() bool {
		return get("api/budget", &budget) && len(budget) == 1 && budget[0].Used >= 3_000_000
	})
	openCharts("the failover still on the chart after the restart")
	shoot(t, c, "#history-card", "lab-history-after-restart.png")
}

func num(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func hasMark(ms []history.Mark, kind string) bool {
	for _, m := range ms {
		if m.Kind == kind {
			return true
		}
	}
	return false
}
