package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/web"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// fakeUplinks stands in for the wan's override: the doors are what is tested here, and a real
// wan needs a whole site (its forcing is tested through the page and the CLI in the labs).
type fakeUplinks struct {
	mu   sync.Mutex
	mode wan.Mode
}

func (u *fakeUplinks) status() (wan.Status, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return wan.Status{Active: wan.Primary, Mode: u.mode}, true
}

func (u *fakeUplinks) force(_ context.Context, m wan.Mode) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mode = m
	return nil
}

// doors is one app with its three doors open: the page's handler, the control socket and the
// simulated button of a running hal part; the firewall owner runs in a namespace of its own.
type doors struct {
	app    *App
	wan    *fakeUplinks
	page   http.Handler
	hdr    map[string]string // a logged-in admin's action headers
	socket control.Client
	events <-chan events.Event
}

func openDoors(t *testing.T) *doors {
	t.Helper()
	_, ns := labtest.Netns(t, "doors")
	dir := t.TempDir()
	cfg := labConfig(t, func(s string) string { return strings.Replace(s, "[hal]\n", "[hal]\nlong_press = \"1s\"\n", 1) })
	bus := events.New(1000)
	owner, err := netcfg.NewOwner(netcfg.OwnerOptions{Firewall: netcfg.New(int(ns)), StateDir: dir, Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() { defer wg.Done(); _ = owner.Run(ctx) }()
	if err := owner.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	app := &App{Options: Options{Log: slog.New(slog.DiscardHandler), StateDir: dir, ControlSocket: filepath.Join(dir, "control.sock")},
		Bus: bus, Alerts: alerts.New(nil), Owner: owner, Audit: audit.Open(filepath.Join(dir, "audit.log")), Control: http.NewServeMux(), cfg: cfg}
	d := &doors{app: app, wan: &fakeUplinks{mode: wan.Auto}, socket: control.Client{Socket: app.ControlSocket}}
	app.Actions = app.newActions()
	app.Actions.WAN, app.Actions.Force = d.wan.status, d.wan.force
	h, err := newHALPart(app)
	if err != nil {
		t.Fatal(err)
	}
	app.HAL.Store(h)
	wg.Add(1)
	go func() { defer wg.Done(); _ = h.Run(ctx) }()
	app.routes()
	stop, err := app.serveControl()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	d.page = web.New(webOptions(app)).Handler()
	if err := web.SetPassword(dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	w := d.post(t, "/api/login", `{"password":"correct horse"}`, map[string]string{"Origin": "https://192.168.50.1"})
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	var lr struct{ CSRF string }
	_ = json.Unmarshal(w.Body.Bytes(), &lr)
	c := w.Result().Cookies()[0]
	d.hdr = map[string]string{"Cookie": c.Name + "=" + c.Value, "X-CSRF-Token": lr.CSRF, "Origin": "https://192.168.50.1"}
	var unsub func()
	d.events, unsub = bus.Subscribe(1000)
	t.Cleanup(unsub)
	return d
}

// post sends a request to the page over HTTPS from the phone on the LAN.
func (d *doors) post(t *testing.T, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("POST", "https://192.168.50.1"+path, strings.NewReader(body))
	r.RemoteAddr = lab.Phone4 + ":50000"
	r.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	d.page.ServeHTTP(w, r)
	return w
}

// act posts an action to the page, logged in.
func (d *doors) act(t *testing.T, path, body string, want int) {
	t.Helper()
	if w := d.post(t, path, body, d.hdr); w.Code != want {
		t.Fatalf("page %s %s: %d %s", path, body, w.Code, w.Body)
	}
}

// did is what an action left: its audit records (who left out) and its events' kinds.
type did struct {
	records []string
	kinds   []string
}

// through runs one door's call and returns what the action whose audit records are named
// what and whose events are kinds left, once its event has been seen (the button's presses
// act in the hal part's loop); by is how the door names the actor on a blocklist claim.
func (d *doors) through(t *testing.T, by string, what, kinds []string, call func()) did {
	t.Helper()
	before, err := d.app.Audit.Entries()
	if err != nil {
		t.Fatal(err)
	}
	call()
	var out did
	deadline := time.After(15 * time.Second)
	for len(out.kinds) == 0 {
		select {
		case e := <-d.events:
			if slices.Contains(kinds, e.Kind) {
				out.kinds = append(out.kinds, e.Kind)
			}
		case <-deadline:
			t.Fatalf("no %v event", kinds)
		}
	}
	// Anything else the action published comes straight after its first event.
	for drained := false; !drained; {
		select {
		case e := <-d.events:
			if slices.Contains(kinds, e.Kind) {
				out.kinds = append(out.kinds, e.Kind)
			}
		case <-time.After(200 * time.Millisecond):
			drained = true
		}
	}
	after, err := d.app.Audit.Entries()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range after[len(before):] {
		if slices.Contains(what, e.What) {
			out.records = append(out.records, e.What+" | "+strings.ReplaceAll(e.Before, by, "WHO")+" | "+e.After)
		}
	}
	return out
}

// same fails unless every door left what the first did.
func same(t *testing.T, action string, byDoor map[string]did) {
	t.Helper()
	var first string
	var want did
	for door, got := range byDoor {
		if len(got.records) != 1 {
			t.Errorf("%s through %s: audited %q, want one record", action, door, got.records)
		}
		if first == "" {
			first, want = door, got
			continue
		}
		if !slices.Equal(got.records, want.records) || !slices.Equal(got.kinds, want.kinds) {
			t.Errorf("%s through %s left %+v, through %s %+v", action, door, got, first, want)
		}
	}
}

// Each action is one implementation: whichever door it comes through (the page, the control
// socket, the button), it writes the same audit record and publishes the same event.
func TestEachActionThroughEveryDoor(t *testing.T) {
	d := openDoors(t)
	pageBy, cliBy := control.Page(lab.Phone4).By(), control.Console("tester").By()
	auto := func() { _ = d.wan.force(context.Background(), wan.Auto) }

	forced := map[string]did{}
	kinds := []string{"uplink.force", "uplink.force.failed"}
	forced["page"] = d.through(t, pageBy, []string{"uplink.force"}, kinds, func() { d.act(t, "/api/uplink/force", `{"mode":"backup"}`, 200) })
	auto()
	forced["socket"] = d.through(t, cliBy, []string{"uplink.force"}, kinds, func() {
		if _, err := d.socket.Force(control.ForceRequest{Mode: wan.ForceBackup, By: "tester"}); err != nil {
			t.Fatal(err)
		}
	})
	auto()
	forced["button"] = d.through(t, control.Button.By(), []string{"uplink.force"}, kinds, func() {
		if err := d.app.HAL.Load().Press(false); err != nil {
			t.Fatal(err)
		}
	})
	auto()
	same(t, "force", forced)
	if got := forced["page"].records; len(got) != 1 || got[0] != "uplink.force | auto | backup" {
		t.Errorf("force audited %q, want auto → backup", got)
	}

	blocks, unblocks := map[string]did{}, map[string]did{}
	bk, uk := []string{"block.manual"}, []string{"block.manual.unblock"}
	blocks["page"] = d.through(t, pageBy, []string{"block"}, bk, func() {
		d.act(t, "/api/block", `{"addr":"`+lab.Attacker4+`","for":"1h","reason":"doors"}`, 200)
	})
	unblocks["page"] = d.through(t, pageBy, []string{"unblock"}, uk, func() { d.act(t, "/api/unblock", `{"addr":"`+lab.Attacker4+`"}`, 200) })
	p := config.Prefix{Prefix: netip.PrefixFrom(netip.MustParseAddr(lab.Attacker4), 32)}
	blocks["socket"] = d.through(t, cliBy, []string{"block"}, bk, func() {
		if _, err := d.socket.Block(control.BlockRequest{Prefix: p, For: time.Hour, Reason: "doors", By: "tester"}); err != nil {
			t.Fatal(err)
		}
	})
	unblocks["socket"] = d.through(t, cliBy, []string{"unblock"}, uk, func() {
		if _, err := d.socket.Unblock(control.UnblockRequest{Prefix: p, By: "tester"}); err != nil {
			t.Fatal(err)
		}
	})
	same(t, "block", blocks)
	same(t, "unblock", unblocks)
	if got := unblocks["socket"].records; len(got) != 1 || got[0] != "unblock | "+lab.Attacker4+" (manual by WHO: doors) | " {
		t.Errorf("unblock audited %q, want the claim it removed", got)
	}

	acks := map[string]did{}
	ak := []string{"alert.acknowledged"}
	raise := func() { d.app.Alerts.Raise("test.doors", "test", "an alert for each door") }
	raise()
	acks["page"] = d.through(t, pageBy, []string{"alert.acknowledge"}, ak, func() { d.act(t, "/api/alerts/ack", `{}`, 200) })
	raise()
	acks["socket"] = d.through(t, cliBy, []string{"alert.acknowledge"}, ak, func() {
		if _, err := d.socket.Acknowledge(control.AckRequest{By: "tester"}); err != nil {
			t.Fatal(err)
		}
	})
	raise()
	acks["button"] = d.through(t, control.Button.By(), []string{"alert.acknowledge"}, ak, func() {
		if err := d.app.HAL.Load().Press(true); err != nil {
			t.Fatal(err)
		}
	})
	same(t, "acknowledge", acks)
	if got := acks["button"].records; len(got) != 1 || !strings.Contains(got[0], "test.doors") {
		t.Errorf("acknowledge audited %q, want the alert it acknowledged", got)
	}

	// The simulated button's press: from the page and the CLI (the real button is the press
	// itself); each press forces the uplink through the button's door.
	auto()
	presses := map[string]did{}
	pk := []string{"uplink.force", "button.press.failed"}
	presses["page"] = d.through(t, control.Button.By(), []string{"button.press"}, pk, func() { d.act(t, "/api/button", `{"long":false}`, 202) })
	auto()
	presses["socket"] = d.through(t, control.Button.By(), []string{"button.press"}, pk, func() {
		if _, err := d.socket.Press(control.ButtonRequest{By: "tester"}); err != nil {
			t.Fatal(err)
		}
	})
	same(t, "press", presses)
}
