package web

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/crowdsec"
)

// The fleet-sharing card's API: behind login (it names the fleet's server), off when the
// part is, and the part's state when it runs.
func TestCrowdSecCard(t *testing.T) {
	e := newEnv(t)
	if w := e.req("GET", "/api/crowdsec", lan, "", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("/api/crowdsec without a login: %d, want 401", w.Code)
	}
	sess := loggedIn(t, e)
	get := func() crowdSecView {
		t.Helper()
		w := e.req("GET", "/api/crowdsec", lan, "", sess)
		var v crowdSecView
		if err := json.Unmarshal(w.Body.Bytes(), &v); w.Code != 200 || err != nil {
			t.Fatalf("/api/crowdsec: %d %v %s", w.Code, err, w.Body)
		}
		return v
	}
	if v := get(); v.On {
		t.Errorf("the card says on while the part is off: %+v", v)
	}
	st := crowdsec.Status{URL: "https://lapi.example.net:8080", Pulling: true, Pushing: true, LastPull: e.now.Add(-2 * time.Second),
		Decisions: 1204, Refused: []string{"0.0.0.0/1: wider than /16"}, Pushed: 3, Queued: 1, PushError: "connection refused"}
	e.s.o.CrowdSec = func() (crowdsec.Status, bool) { return st, true }
	v := get()
	if !v.On || v.URL != st.URL || v.Decisions != 1204 || len(v.Refused) != 1 || v.Queued != 1 || v.PushError != "connection refused" || !v.LastPull.Equal(st.LastPull) {
		t.Errorf("/api/crowdsec = %+v, want %+v", v, st)
	}
}
