package history

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// The budget alert comes at 80 % and again at 100 %, each told once (not again after a
// restart), survives an acknowledgement while the use stays, and clears at a new period.
func TestBudgetAlerts(t *testing.T) {
	dir := t.TempDir()
	bus := events.New(100)
	store := alerts.New(nil)
	part := func() *Uplinks {
		return NewUplinks(UplinksOptions{Dir: dir, Alerts: store, Bus: bus, Log: slog.New(slog.DiscardHandler),
			Unreadable: func(file string, err error) { t.Errorf("%s unreadable: %v", file, err) }})
	}
	p := part()
	u := &config.Uplink{Name: "LTE", Interface: "lte0", Role: "backup", DataBudget: 1_000_000, BillingDay: 31}
	now := time.Date(2026, 2, 10, 12, 0, 0, 0, time.UTC)
	read := func(p *Uplinks, n uint64) UplinkUsage {
		return p.count(now, u, &Counter{Boot: "b", IfIndex: 3, Bytes: n}, time.UTC)
	}
	told := func() (n int) {
		for _, e := range bus.Recent(100) {
			if e.Kind == KeyBudget {
				n++
			}
		}
		return n
	}
	alert := func() *alerts.Alert {
		for _, a := range store.List() {
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
	store.Acknowledge()
	read(p, 860_000)
	if a := alert(); a == nil || !a.Acked {
		t.Fatalf("a sample undid the acknowledgement: %+v", a)
	}
	if uu := read(p, 1_200_000); uu.Level != "critical" || told() != 2 || alert().Acked {
		t.Fatalf("at 120 %%: level %q, told %d, alert %+v", uu.Level, told(), alert())
	}
	p.Save()
	store = alerts.New(nil)
	p = part() // a restart: the alert is raised again, people are not told again
	if uu := read(p, 1_300_000); uu.Used != 1_300_000 || alert() == nil || told() != 2 {
		t.Fatalf("after a restart: used %d, alert %+v, told %d", uu.Used, alert(), told())
	}
	now = time.Date(2026, 2, 28, 0, 0, 1, 0, time.UTC) // February's last day: the 31st's period starts
	if uu := read(p, 1_300_000); uu.Used != 0 || uu.Level != "" || alert() == nil || alert().Active {
		t.Fatalf("new period: used %d level %q alert %+v, want a cleared alert", uu.Used, uu.Level, alert())
	}
}

// The kernel's counters of an uplink's interface become its rates and its data use; an
// uplink whose interface is absent is a gap, not an error.
func TestUplinksReadTheKernel(t *testing.T) {
	st, err := Open(t.TempDir(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := NewUplinks(UplinksOptions{Store: st, Dir: t.TempDir(), Alerts: alerts.New(nil), Log: slog.New(slog.DiscardHandler)})
	ups := []*config.Uplink{{Name: "LO", Interface: "lo", Role: "primary", DataBudget: 1 << 40, BillingDay: 1},
		{Name: "Gone", Interface: "hist-absent0", Role: "backup", DataBudget: 1 << 40, BillingDay: 1}}
	t0 := time.Date(2026, 2, 10, 12, 0, 0, 0, time.UTC)
	p.Sample(t0, ups, time.UTC)
	// 64 KB through the loopback (both directions count on lo).
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 1024)
	for range 64 {
		if _, err := pc.WriteTo(buf, pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	t1 := t0.Add(Step)
	p.Sample(t1, ups, time.UTC)
	pts, _ := st.Query("uplink/primary/rx_Bps", t0, t1.Add(Step), t1)
	if len(pts) == 0 || pts[len(pts)-1].V < 64*1024/Step.Seconds() {
		t.Fatalf("loopback rx rate: %v, want at least %.0f B/s", pts, 64*1024/Step.Seconds())
	}
	if pts, _ := st.Query("uplink/backup/rx_Bps", t0, t1.Add(Step), t1); len(pts) != 0 {
		t.Fatalf("an absent interface has rates: %v", pts)
	}
	use := p.Usage()
	if len(use) != 2 || use[0].Role != "primary" || use[0].Used < 2*64*1024 || use[1].Used != 0 {
		t.Fatalf("usage %+v: want the loopback's bytes counted, none for the absent interface", use)
	}
}
