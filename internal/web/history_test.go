package web

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/history"
)

// /api/history answers the series a pattern names, at 10 s for the last day and 5-minute
// means beyond, with the failovers; bad ranges are refused in plain words.
func TestHistoryAPI(t *testing.T) {
	cfg, err := config.Parse("example.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	st, _ := history.Open(t.TempDir(), nil, nil)
	for ts := now.Add(-3 * 24 * time.Hour); ts.Before(now); ts = ts.Add(history.Step) {
		st.Add("uplink/primary/rtt_ms", ts, 4)
		st.Add("uplink/backup/rtt_ms", ts, 40)
		st.Add("uplink/backup/rx_Bps", ts, 1000)
	}
	st.Mark(history.Mark{T: now.Add(-2 * time.Hour), Kind: "wan.failover", Message: "primary down"})
	s := New(Options{Config: func() *config.Config { return cfg }, Bus: events.New(10), StateDir: t.TempDir(), Now: func() time.Time { return now },
		ReadFirewall: func() FirewallState { return FirewallState{} }, History: func() *history.Store { return st }})
	get := func(q string) (int, HistoryView, string) {
		w := httptest.NewRecorder()
		s.handleHistory(w, httptest.NewRequest("GET", "/api/history?"+q, nil))
		var v HistoryView
		_ = json.Unmarshal(w.Body.Bytes(), &v)
		return w.Code, v, w.Body.String()
	}
	code, v, body := get("series=uplink/*/rtt_ms")
	if code != 200 || v.Step != 10 || len(v.Series) != 2 || len(v.Series["uplink/primary/rtt_ms"]) != 8640 || len(v.Marks) != 1 || len(v.Names) != 3 || v.Zone != "UTC" {
		t.Fatalf("last day: %d step %d, %d series, %d marks: %.300s", code, v.Step, len(v.Series), len(v.Marks), body)
	}
	code, v, _ = get(fmt.Sprintf("series=uplink/backup/rx_Bps&from=%d&to=%d", now.Add(-7*24*time.Hour).Unix(), now.Unix()))
	if code != 200 || v.Step != 300 || len(v.Series["uplink/backup/rx_Bps"]) != 3*24*12 {
		t.Fatalf("week: %d step %d, %d points", code, v.Step, len(v.Series["uplink/backup/rx_Bps"]))
	}
	for _, q := range []string{"from=yesterday", fmt.Sprintf("from=%d&to=%d", now.Unix(), now.Add(-time.Hour).Unix()),
		fmt.Sprintf("from=%d", now.Add(-30*24*time.Hour).Unix())} {
		if code, _, body := get(q); code != 400 || !strings.Contains(body, "from") {
			t.Errorf("%s: %d %s, want 400 saying what is wrong", q, code, body)
		}
	}
}
