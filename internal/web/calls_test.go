package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/calls"
)

// The calls card's API is behind login (numbers called are personal data); /metrics has
// the active calls' loss, jitter and MOS by call, extension and direction, and the counters.
func TestCallsCardAndMetrics(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	st := calls.Status{Enabled: true, MaxCalls: 200, MOSAlert: 3.5, Counters: calls.Counters{Calls: 3, OneWay: 1, Poor: 2},
		Active: []calls.Call{{ID: "0a1b2c3d4e", Extension: "201", Remote: "+441632960001", Direction: "inbound", Line: "FTTC", Answered: now,
			ToPBX:   calls.Flow{Packets: 450, Expected: 500, Lost: 50, LossPct: 10, JitterMs: 1.25, MOS: 3.6},
			FromPBX: calls.Flow{Packets: 500, Expected: 500, JitterMs: 0.5, MOS: 4.4}, MOS: 3.6}},
		Recent: []calls.Call{}}
	e.s.o.Calls = func() (calls.Status, bool) { return st, true }
	if w := e.req("GET", "/api/calls", lan, "", nil); w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "441632960001") {
		t.Errorf("/api/calls without a login: %d, want 401", w.Code)
	}
	sess := loggedIn(t, e)
	if w := e.req("GET", "/api/calls", lan, "", sess); w.Code != 200 || !strings.Contains(w.Body.String(), `"extension": "201"`) ||
		!strings.Contains(w.Body.String(), `"loss_pct": 10`) {
		t.Errorf("/api/calls: %d %s", w.Code, w.Body)
	}
	m := e.req("GET", "/metrics", lan, "", nil).Body.String()
	for _, want := range []string{"appliance_calls_active 1", `appliance_call_loss_ratio{call="0a1b2c3d4e",direction="to_pbx",extension="201"} 0.1`,
		`appliance_call_jitter_ms{call="0a1b2c3d4e",direction="from_pbx",extension="201"} 0.5`,
		`appliance_call_mos{call="0a1b2c3d4e",direction="from_pbx",extension="201"} 4.4`,
		"appliance_calls_total 3", "appliance_calls_one_way_total 1", "appliance_calls_poor_total 2"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	e.s.o.Calls = func() (calls.Status, bool) { return calls.Status{}, false }
	if w := e.req("GET", "/api/calls", lan, "", sess); w.Code != 200 || !strings.Contains(w.Body.String(), `"enabled": false`) {
		t.Errorf("/api/calls when off: %d %s", w.Code, w.Body)
	}
}
