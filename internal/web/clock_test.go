package web

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/clock"
)

// The Clock line's API and its /metrics: untrusted until synced, then the offset and the
// server; nothing but "off" without a clock part.
func TestClockAPIAndMetrics(t *testing.T) {
	e := newEnv(t)
	read := func() clockView {
		t.Helper()
		w := e.req("GET", "/api/clock", lan, "", nil)
		if w.Code != 200 {
			t.Fatalf("/api/clock: %d %s", w.Code, w.Body)
		}
		var v clockView
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := read(); v.On {
		t.Errorf("without a clock: %+v", v)
	}
	st := clock.State{Why: "not synced with a time server yet"}
	e.s.o.Clock = func() (clock.State, bool) { return st, true }
	metrics := func() string {
		t.Helper()
		return e.req("GET", "/metrics", lan, "", nil).Body.String()
	}
	if v := read(); !v.On || v.Trusted || !strings.Contains(v.Why, "not synced") {
		t.Errorf("untrusted clock: %+v", v)
	}
	if m := metrics(); !strings.Contains(m, "appliance_clock_trusted 0") || strings.Contains(m, "appliance_clock_offset_seconds") {
		t.Errorf("/metrics of an untrusted clock:\n%s", grep(m, "appliance_clock"))
	}
	st = clock.State{Trusted: true, Why: "synced with ntp.example", Offset: 1500 * time.Millisecond, LastSync: e.now, Server: "ntp.example", Stratum: 2}
	if v := read(); !v.Trusted || v.Server != "ntp.example" || v.Offset != 1500*time.Millisecond {
		t.Errorf("synced clock: %+v", v)
	}
	m := metrics()
	for _, want := range []string{"appliance_clock_trusted 1", "appliance_clock_offset_seconds 1.5", `appliance_clock_last_sync_timestamp_seconds{server="ntp.example"}`, "appliance_clock_stratum 2"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(m, "appliance_clock"))
		}
	}
}

func grep(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
