package history

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// Period is the billing period that holds now: from the billing day at midnight (the
// month's last day when it has fewer days) to the next one, in loc.
func Period(now time.Time, day int, loc *time.Location) (start, end time.Time) {
	y, m, _ := now.In(loc).Date()
	start = billingDate(y, m, day, loc)
	if now.Before(start) {
		start = billingDate(y, m-1, day, loc)
	}
	return start, billingDate(start.Year(), start.Month()+1, day, loc)
}

// billingDate is day (cut to the month's length) of month m at midnight; m may be out of
// 1-12, as time.Date normalizes it.
func billingDate(y int, m time.Month, day int, loc *time.Location) time.Time {
	first := time.Date(y, m, 1, 0, 0, 0, 0, loc)
	last := first.AddDate(0, 1, -1).Day()
	return time.Date(first.Year(), first.Month(), min(day, last), 0, 0, 0, 0, loc)
}

// Usage is an uplink's data use in its billing period.
type Usage struct {
	Budget      int64     `json:"budget_bytes"`
	Used        int64     `json:"used_bytes"`
	Projected   int64     `json:"projected_bytes"` // at the period's end, at the rate so far
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
}

// UplinkUsage is a capped uplink's data use, as the page and /metrics show it.
type UplinkUsage struct {
	Role      string `json:"role"`
	Name      string `json:"name"`
	Interface string `json:"interface"`
	Usage
	Level string `json:"level"` // "", "warning" (80 %), "critical" (100 %)
}

// Percent is the share of the budget used.
func (u Usage) Percent() float64 {
	if u.Budget <= 0 {
		return 0
	}
	return 100 * float64(u.Used) / float64(u.Budget)
}

// Level is "" below 80 %, "warning" from 80 %, "critical" from 100 %.
func (u Usage) Level() string {
	switch p := u.Percent(); {
	case u.Budget <= 0:
		return ""
	case p >= 100:
		return "critical"
	case p >= 80:
		return "warning"
	}
	return ""
}

// Counter is a reading of an interface's byte counters (rx+tx) and what identifies them:
// the kernel's boot and the interface's index. Either changing means the counter restarted
// from zero (a reboot, a modem unplugged and plugged back).
type Counter struct {
	Boot    string `json:"boot"`
	IfIndex int    `json:"ifindex"`
	Bytes   uint64 `json:"bytes"`
}

// meterState is what a Meter keeps across restarts.
type meterState struct {
	PeriodStart time.Time `json:"period_start"`
	Used        int64     `json:"used"`
	Last        *Counter  `json:"last,omitempty"` // nil: no reading yet
	// Told is the level people were last told of (Usage.Level), so a restart tells nothing twice.
	Told string `json:"told,omitempty"`
}

// Meter counts an uplink's bytes in its billing period, across counter resets and daemon
// restarts (its total is saved in its file on Save).
type Meter struct {
	path string
	st   meterState
}

// OpenMeter reads the meter saved at path; a missing file is a fresh meter, an unreadable
// one is an error and a fresh meter (the caller alerts: the period's use is lost).
func OpenMeter(path string) (*Meter, error) {
	m := &Meter{path: path}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return m, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &m.st)
	}
	if err != nil {
		m.st = meterState{}
		return m, fmt.Errorf("history: data use %s: %w", path, err)
	}
	return m, nil
}

// Count takes a reading at now (c nil: the interface is absent). budget and day are the
// uplink's data_budget and billing_day; loc is the site's time zone.
func (m *Meter) Count(now time.Time, c *Counter, budget int64, day int, loc *time.Location) Usage {
	start, end := Period(now, day, loc)
	if !m.st.PeriodStart.Equal(start) {
		// A new period (or the first reading): what was counted belongs to the old one.
		m.st.PeriodStart, m.st.Used, m.st.Told = start, 0, ""
	}
	if c != nil {
		if l := m.st.Last; l != nil {
			switch {
			case l.Boot != c.Boot || l.IfIndex != c.IfIndex || c.Bytes < l.Bytes:
				// The counter started again from zero: all it holds is new.
				m.st.Used += int64(c.Bytes)
			default:
				m.st.Used += int64(c.Bytes - l.Bytes)
			}
		}
		// The first reading ever is the baseline: what the counter held before is of
		// unknown periods.
		cc := *c
		m.st.Last = &cc
	}
	u := Usage{Budget: budget, Used: m.st.Used, PeriodStart: start, PeriodEnd: end}
	// A linear projection; the first ten minutes count as ten, so one download right after
	// the period starts is not read as a month of them.
	elapsed := max(now.Sub(start), 10*time.Minute)
	u.Projected = int64(float64(m.st.Used) * float64(end.Sub(start)) / float64(elapsed))
	return u
}

// Told is the level people were last told of in this period.
func (m *Meter) Told() string { return m.st.Told }

// SetTold records that people were told of level.
func (m *Meter) SetTold(level string) { m.st.Told = level }

// Save writes the meter's state crash-safely.
func (m *Meter) Save() error {
	b, err := json.Marshal(m.st)
	if err != nil {
		return fmt.Errorf("history: data use: %w", err)
	}
	return store.WriteFile(m.path, b, 0o600)
}
