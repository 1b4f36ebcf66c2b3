package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/history"
)

// The budget alert comes at 80 % and again at 100 %, each told once (not again after a
// restart), survives an acknowledgement while the use stays, and clears at a new period.
func TestBudgetAlerts(t *testing.T) {
	cfg := labConfig(t, func(s string) string {
		return strings.Replace(s, "[uplink.backup]\n", "[uplink.backup]\ndata_budget = \"1MB\"\nbilling_day = 31\n", 1)
	})
	app := &App{Options: Options{StateDir: t.TempDir()}, Alerts: alerts.New(nil), Bus: events.New(100), cfg: cfg}
	part := func() *historyPart {
		p, err := newHistoryPart(app)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := part()
	u := cfg.Uplink.Backup
	now := time.Date(2026, 2, 10, 12, 0, 0, 0, time.UTC)
	read := func(p *historyPart, n uint64) history.UplinkUsage {
		return p.count(now, u, &history.Counter{Boot: "b", IfIndex: 3, Bytes: n})
	}
	told := func() (n int) {
		for _, e := range app.Bus.Recent(100) {
			if e.Kind == keyBudget {
				n++
			}
		}
		return n
	}
	alert := func() *alerts.Alert {
		for _, a := range app.Alerts.List() {
			if a.Key == "wan.budget.backup" {
				return &a
			}
		}
		return nil
	}
	read(p, 0)
	if uu := read(p, 500_000); uu.Level != "" || alert() != nil {
		t.Fatalf("at 50 %%: level %q, alert %+v", uu.Level, alert())
	}
	if uu := read(p, 850_000); uu.Level != "warning" || alert() == nil || !alert().Active || told() != 1 ||
		!strings.Contains(alert().Message, "LTE (backup) has used 850 kB of its 1 MB data budget (85 %) since 2026-01-31") {
		t.Fatalf("at 85 %%: level %q, alert %+v, told %d", uu.Level, alert(), told())
	}
	app.Alerts.Acknowledge()
	read(p, 860_000)
	if a := alert(); a == nil || !a.Acked {
		t.Fatalf("a sample undid the acknowledgement: %+v", a)
	}
	if uu := read(p, 1_200_000); uu.Level != "critical" || told() != 2 || alert().Acked {
		t.Fatalf("at 120 %%: level %q, told %d, alert %+v", uu.Level, told(), alert())
	}
	p.flush()
	p = part() // a restart: the alert is raised again, people are not told again
	app.Alerts = alerts.New(nil)
	if uu := read(p, 1_300_000); uu.Used != 1_300_000 || alert() == nil || told() != 2 {
		t.Fatalf("after a restart: used %d, alert %+v, told %d", uu.Used, alert(), told())
	}
	now = time.Date(2026, 2, 28, 0, 0, 1, 0, time.UTC) // February's last day: the 31st's period starts
	if uu := read(p, 1_300_000); uu.Used != 0 || uu.Level != "" || alert() == nil || alert().Active {
		t.Fatalf("new period: used %d level %q alert %+v, want a cleared alert", uu.Used, uu.Level, alert())
	}
}
