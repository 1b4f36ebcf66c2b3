package history

import (
	"path/filepath"
	"testing"
	"time"
)

func TestPeriod(t *testing.T) {
	for _, c := range []struct {
		now        string
		day        int
		start, end string
	}{
		{"2026-03-10T12:00:00Z", 1, "2026-03-01", "2026-04-01"},
		{"2026-03-10T12:00:00Z", 15, "2026-02-15", "2026-03-15"},
		{"2026-02-28T12:00:00Z", 31, "2026-02-28", "2026-03-31"}, // the 31st is February's last day
		{"2026-02-27T12:00:00Z", 31, "2026-01-31", "2026-02-28"},
		{"2026-04-30T00:00:00Z", 31, "2026-04-30", "2026-05-31"},
		{"2026-01-05T00:00:00Z", 10, "2025-12-10", "2026-01-10"},
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		s, e := Period(now, c.day, time.UTC)
		if s.Format(time.DateOnly) != c.start || e.Format(time.DateOnly) != c.end {
			t.Errorf("%s day %d: %s to %s, want %s to %s", c.now, c.day, s.Format(time.DateOnly), e.Format(time.DateOnly), c.start, c.end)
		}
	}
}

// Use is counted across counter resets (a modem re-plugged, a reboot) and daemon restarts,
// and starts again at a new period; alerts come at 80 % and 100 %.
func TestMeter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budget-backup.json")
	m, err := OpenMeter(path)
	if err != nil {
		t.Fatal(err)
	}
	const budget = 1000
	now := time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC) // 10 days into a 31-day period
	c := func(boot string, idx int, n uint64) *Counter { return &Counter{Boot: boot, IfIndex: idx, Bytes: n} }
	u := m.Count(now, c("b1", 5, 5000), budget, 1, time.UTC) // the baseline
	if u.Used != 0 {
		t.Fatalf("first reading used %d, want 0 (a baseline)", u.Used)
	}
	u = m.Count(now, c("b1", 5, 5300), budget, 1, time.UTC)
	if u.Used != 300 || u.Projected != 930 || u.Level() != "" {
		t.Fatalf("used %d projected %d level %q, want 300, 930, none", u.Used, u.Projected, u.Level())
	}
	u = m.Count(now, nil, budget, 1, time.UTC)             // the modem is pulled
	u = m.Count(now, c("b1", 9, 200), budget, 1, time.UTC) // and back, a new interface
	u = m.Count(now, c("b1", 9, 100), budget, 1, time.UTC) // its counter reset
	u = m.Count(now, c("b1", 9, 500), budget, 1, time.UTC) // 400 more
	if u.Used != 1000 || u.Level() != "critical" {
		t.Fatalf("used %d level %q, want 1000, critical", u.Used, u.Level())
	}
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	m2, err := OpenMeter(path)
	if err != nil {
		t.Fatal(err)
	}
	if u = m2.Count(now, c("b2", 9, 50), budget, 1, time.UTC); u.Used != 1050 { // a reboot
		t.Fatalf("after restart and reboot used %d, want 1050", u.Used)
	}
	if u = m2.Count(now.AddDate(0, 0, 21), c("b2", 9, 60), budget, 1, time.UTC); u.Used != 10 || u.Level() != "" ||
		u.PeriodStart.Format(time.DateOnly) != "2026-04-01" {
		t.Fatalf("new period: used %d from %s, want the 10 bytes since the last reading, from 2026-04-01", u.Used, u.PeriodStart)
	}
	if (Usage{Budget: 1000, Used: 800}).Level() != "warning" {
		t.Fatal("80 % is not a warning")
	}
}
