package web

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/cfgedit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/diag"
)

// The diagnostics and the config editor are behind login, and refuse what is not a target,
// an interface of the box or a bounded capture before anything runs.
func TestDiagAndConfigRefusals(t *testing.T) {
	e := newEnv(t)
	e.s.o.Uplinks = func() []diag.Uplink {
		return []diag.Uplink{{Role: "primary", Name: "FTTC", Interface: "eth1", Source: netip.MustParseAddr("198.51.100.2")}}
	}
	path := filepath.Join(e.dir, "appliance.toml")
	if err := os.WriteFile(path, config.Example(), 0o600); err != nil {
		t.Fatal(err)
	}
	ed, err := cfgedit.New(cfgedit.Options{Path: path, Reload: func(string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	e.s.o.ConfigEdit = ed
	for _, p := range []string{"/api/diag", "/api/config"} {
		if w := e.req("GET", p, lan, "", nil); w.Code != 401 {
			t.Errorf("GET %s without login: %d", p, w.Code)
		}
	}
	if w := e.req("POST", "/api/diag/ping", lan, `{"uplink":"primary","target":"192.0.2.1"}`, map[string]string{"Origin": "https://192.168.1.1"}); w.Code != 401 {
		t.Errorf("ping without login: %d", w.Code)
	}
	h := loggedIn(t, e)
	for body, want := range map[string]string{
		`{"uplink":"primary","target":"-c 100000"}`:    "must be an IP address or a host name",
		`{"uplink":"primary","target":"a.example;id"}`: "must be an IP address or a host name",
		`{"uplink":"wifi","target":"192.0.2.1"}`:       "no uplink",
		`{"uplink":"FTTC","target":"192.0.2.1 -f"}`:    "must be an IP address or a host name",
	} {
		w := e.req("POST", "/api/diag/ping", lan, body, h)
		if w.Code != 400 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("ping %s: %d %s", body, w.Code, w.Body)
		}
	}
	for body, want := range map[string]string{
		`{"interface":"eth0","seconds":61}`: "capture for 1 to 60 seconds",
		`{"interface":"eth0","seconds":0}`:  "capture for 1 to 60 seconds",
		`{"interface":"eth9","seconds":5}`:  "is not the LAN's or an uplink's interface",
	} {
		w := e.req("POST", "/api/diag/capture", lan, body, h)
		if w.Code != 400 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("capture %s: %d %s", body, w.Code, w.Body)
		}
	}
	if w := e.req("POST", "/api/diag/sip", lan, `{"uplink":"primary","trunk":"nobody"}`, h); w.Code != 400 {
		t.Errorf("SIP OPTIONS to a trunk not configured: %d %s", w.Code, w.Body)
	}

	// A bad candidate: its errors with line and field, and nothing applied.
	bad, _ := json.Marshal(map[string]string{"text": strings.Replace(string(config.Example()), "ssh_port = 22", "ssh_port = 99999", 1)})
	w := e.req("POST", "/api/config/check", lan, string(bad), h)
	var c cfgedit.Check
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &c) != nil || len(c.Errors) != 1 || c.Errors[0].Field != "admin.ssh_port" || c.Errors[0].Line == 0 {
		t.Errorf("check: %d %s", w.Code, w.Body)
	}
	if w := e.req("POST", "/api/config/apply", lan, string(bad), h); w.Code != 422 || !strings.Contains(w.Body.String(), "admin.ssh_port") {
		t.Errorf("apply a bad candidate: %d %s", w.Code, w.Body)
	}
	if b, _ := os.ReadFile(path); string(b) != string(config.Example()) {
		t.Error("a refused candidate changed the file")
	}
	w = e.req("GET", "/api/config", lan, "", h)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"pending": null`) {
		t.Errorf("GET /api/config: %d %s", w.Code, w.Body)
	}

	// A good change waits for its confirmation; confirmed, it stays, and is audited.
	good, _ := json.Marshal(map[string]string{"text": strings.Replace(string(config.Example()), `site = "Example Office"`, `site = "Renamed Office"`, 1)})
	w = e.req("POST", "/api/config/apply", lan, string(good), h)
	var applied struct{ Pending cfgedit.Pending }
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &applied) != nil || applied.Pending.ID == "" || !strings.Contains(applied.Pending.By, lan) {
		t.Fatalf("apply: %d %s", w.Code, w.Body)
	}
	if w := e.req("POST", "/api/config/apply", lan, string(good), h); w.Code != 409 {
		t.Errorf("a second change while one waits: %d %s", w.Code, w.Body)
	}
	if w := e.req("POST", "/api/config/confirm", lan, `{"id":"nope"}`, h); w.Code != 409 {
		t.Errorf("confirm another id: %d %s", w.Code, w.Body)
	}
	if w := e.req("POST", "/api/config/confirm", lan, `{"id":"`+applied.Pending.ID+`"}`, h); w.Code != 200 {
		t.Errorf("confirm: %d %s", w.Code, w.Body)
	}
	var view configView
	w = e.req("GET", "/api/config", lan, "", h)
	if json.Unmarshal(w.Body.Bytes(), &view) != nil || view.Pending != nil || len(view.History) != 1 || !strings.Contains(view.Text, "Renamed Office") {
		t.Fatalf("after confirming: %s", w.Body)
	}
	if w := e.req("GET", "/api/config/version?name="+view.History[0].Name, lan, "", h); w.Code != 200 || w.Body.String() != string(config.Example()) {
		t.Errorf("the earlier version: %d", w.Code)
	}
	if w := e.req("GET", "/api/config/version?name=../../etc/passwd", lan, "", h); w.Code != 404 {
		t.Errorf("a path outside the history: %d", w.Code)
	}
	// One click rolls back, as a change to confirm like any other.
	if w := e.req("POST", "/api/config/rollback", lan, `{"name":"`+view.History[0].Name+`"}`, h); w.Code != 200 || !strings.Contains(w.Body.String(), "rollback to") {
		t.Errorf("rollback: %d %s", w.Code, w.Body)
	}
	if b, _ := os.ReadFile(path); string(b) != string(config.Example()) {
		t.Error("the rollback did not bring the earlier version back")
	}
}
