package setup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/setup"
	"github.com/officeedge/appliance/internal/web/cdptest"
)

// TestSetupPageInBrowser fills in the setup page in headless Chromium as a person would: a
// wrong code is refused, a bad address is shown on its field with the other answers kept,
// and the corrected form applies a config that parses, ending on the confirm notice.
func TestSetupPageInBrowser(t *testing.T) {
	var mu sync.Mutex
	var applied [][]byte
	var by []string
	srv := httptest.NewTLSServer(setup.NewPage(setup.PageOptions{
		Check:      setup.NewGuard("K7QM-3XWP").Check,
		Interfaces: func() []string { return []string{"eth1", "eth2"} },
		BootErrors: func() []string {
			return []string{`appliance.toml:3:1: site: "<b>x</b>" has a control character`}
		},
		Apply: func(_ context.Context, candidate []byte, who string) error {
			mu.Lock()
			defer mu.Unlock()
			applied, by = append(applied, candidate), append(by, who)
			return nil
		},
		Version: "test",
		LAN:     "eth0",
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	br := exec.Command("chromium", append(cdptest.ChromiumArgs, "--ignore-certificate-errors",
		"--user-data-dir="+filepath.Join(t.TempDir(), "chromium"), "about:blank")...)
	br.Stdout, br.Stderr = io.Discard, io.Discard
	c := cdptest.Launch(t, br)
	if err := c.Open(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the setup form", 30*time.Second, func() bool { return c.Text("#apply") != "" })
	if got := c.Text("#boot-errors"); !strings.Contains(got, "appliance.toml.rejected") || !strings.Contains(got, `"<b>x</b>"`) {
		t.Errorf("#boot-errors says %q", got)
	}
	if v, _ := c.Eval(`[...document.querySelectorAll("#ports option")].map(o => o.value).join(",")`); string(v) != `"eth1,eth2"` {
		t.Errorf("the port choices are %s, want eth1,eth2", v)
	}
	// The inline style and script run under the page's Content-Security-Policy.
	if v, _ := c.Eval(`getComputedStyle(document.querySelector("header")).backgroundColor`); string(v) != `"rgb(31, 41, 51)"` {
		t.Errorf("the page's style is not applied: header background %s", v)
	}
	if !hidden(t, c, "#errors-card") {
		t.Error("an empty error list shows")
	}
	if !hidden(t, c, "#primary-static") {
		t.Error("the fixed address fields show while the line is on DHCP")
	}

	// A wrong code: refused before anything is rendered.
	fillForm(t, c, "WRONG-CODE", "198.51.100.2/29")
	submit(t, c)
	labtest.WaitFor(t, "the wrong code refused", 30*time.Second, func() bool { return strings.Contains(c.Text("#errors"), "Setup code") })
	if got := c.Text("#errors"); !strings.Contains(got, "is not the box's setup code") {
		t.Errorf("#errors says %q", got)
	}
	keptAnswers(t, c, "198.51.100.2/29")

	// The right code (as typed from the console, in lower case) and a bad address: the
	// field's error, the rest as typed.
	fillForm(t, c, "k7qm3xwp", "198.51.100.300/29")
	submit(t, c)
	labtest.WaitFor(t, "the bad address refused", 30*time.Second, func() bool {
		return strings.Contains(c.Text("#errors"), "Main internet line: the box's address")
	})
	if got := c.Text("#errors"); strings.Contains(got, "Setup code") {
		t.Errorf("the right code refused: %q", got)
	}
	if v, _ := c.Eval(`document.getElementById("primary-address").classList.contains("bad")`); string(v) != "true" {
		t.Error("the bad address's field is not marked")
	}
	keptAnswers(t, c, "198.51.100.300/29")
	mu.Lock()
	n := len(applied)
	mu.Unlock()
	if n != 0 {
		t.Fatalf("%d configs applied before the form was right", n)
	}

	// Corrected: applied, with the confirm notice and the link to the normal page.
	fillForm(t, c, "K7QM-3XWP", "198.51.100.2/29")
	submit(t, c)
	labtest.WaitFor(t, "the applied notice", 60*time.Second, func() bool { return c.Text("#applied") != "" })
	if p := os.Getenv("SETUP_SCREENSHOT"); p != "" {
		if png, err := c.Screenshot(); err == nil {
			_ = os.WriteFile(p, png, 0o644)
		}
	}
	got := c.Text("#applied")
	for _, want := range []string{"confirm", "2 minutes", "by this computer's clock"} {
		if !strings.Contains(got, want) {
			t.Errorf("#applied lacks %q: %q", want, got)
		}
	}
	if v, _ := c.Eval(`document.getElementById("continue").href`); string(v) != `"https://127.0.0.1/"` {
		t.Errorf("#continue goes to %s", v)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 1 || by[0] != "setup page from 127.0.0.1" {
		t.Fatalf("applied %d configs, by %q", len(applied), by)
	}
	cfg, err := config.Parse("appliance.toml", applied[0])
	if err != nil {
		t.Fatalf("the applied config does not parse: %v", err)
	}
	if cfg.Site != `Smith & "Co" <b>` || cfg.Uplink.Primary.Address.String() != "198.51.100.2/29" || cfg.Uplink.Backup != nil ||
		cfg.PBX.Address.String() != "192.168.1.20" || fmt.Sprint(cfg.SIPPeers["trunk"].Networks) != "[192.0.2.0/28]" ||
		strings.Join(cfg.SIPPeers["trunk"].Hosts, ",") != "sip.provider.example" {
		t.Errorf("applied: site %q, primary %+v, backup %v, pbx %s, trunk %+v", cfg.Site, cfg.Uplink.Primary, cfg.Uplink.Backup, cfg.PBX.Address, cfg.SIPPeers["trunk"])
	}
}

// fillForm types the answers into the form as a person would (after a refusal the kept
// answers are cleared first, as select-all and typing over would).
func fillForm(t *testing.T, c *cdptest.Browser, code, address string) {
	t.Helper()
	typeInto(t, c, "code", code)
	typeInto(t, c, "site", `Smith & "Co" <b>`)
	typeInto(t, c, "password", "a long password")
	typeInto(t, c, "password2", "a long password")
	typeInto(t, c, "primary-interface", "eth1")
	choose(t, c, "primary-mode", "static")
	typeInto(t, c, "primary-address", address)
	typeInto(t, c, "primary-gateway", "198.51.100.1")
	typeInto(t, c, "pbx", "192.168.1.20")
	typeInto(t, c, "trunks", "192.0.2.0/28\nsip.provider.example")
}

func typeInto(t *testing.T, c *cdptest.Browser, id, text string) {
	t.Helper()
	if _, err := c.Eval(fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = ""; e.focus(); })()`, id)); err != nil {
		t.Fatalf("focus #%s: %v", id, err)
	}
	if err := c.TypeText(text); err != nil {
		t.Fatalf("type into #%s: %v", id, err)
	}
}

// choose picks an option of a select, as a person's click does (with its change event).
func choose(t *testing.T, c *cdptest.Browser, id, value string) {
	t.Helper()
	if _, err := c.Eval(fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q;
		e.dispatchEvent(new Event("change")); })()`, id, value)); err != nil {
		t.Fatalf("choose %s in #%s: %v", value, id, err)
	}
	if hidden(t, c, "#"+strings.TrimSuffix(id, "-mode")+"-static") != (value != "static") {
		t.Errorf("#%s = %s: the address fields' visibility is wrong", id, value)
	}
}

// submit presses Apply and waits for the next page to begin loading.
func submit(t *testing.T, c *cdptest.Browser) {
	t.Helper()
	if _, err := c.Eval(`window.__before = true`); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#apply"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the form sent", 60*time.Second, func() bool {
		v, err := c.Eval(`window.__before === undefined && document.readyState === "complete"`)
		return err == nil && string(v) == "true"
	})
}

func hidden(t *testing.T, c *cdptest.Browser, sel string) bool {
	t.Helper()
	v, err := c.Eval(fmt.Sprintf(`document.querySelector(%q).offsetParent === null`, sel))
	if err != nil {
		t.Fatal(err)
	}
	return string(v) == "true"
}

// keptAnswers checks the refused form shows what was typed, but never the code or the
// passwords.
func keptAnswers(t *testing.T, c *cdptest.Browser, address string) {
	t.Helper()
	v, err := c.Eval(`Object.fromEntries(["code", "site", "password", "password2", "primary-interface", "primary-mode",
		"primary-address", "primary-gateway", "pbx", "trunks"].map(id => [id, document.getElementById(id).value]))`)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(v, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"code": "", "site": `Smith & "Co" <b>`, "password": "", "password2": "", "primary-interface": "eth1",
		"primary-mode": "static", "primary-address": address, "primary-gateway": "198.51.100.1", "pbx": "192.168.1.20",
		"trunks": "192.0.2.0/28\nsip.provider.example"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("after the refusal #%s is %q, want %q", k, got[k], w)
		}
	}
	if hidden(t, c, "#primary-static") {
		t.Error("the fixed address fields are hidden while the form says static")
	}
}
