// Command vmsetup is scripts/vm-setup's browser: it sets up a generic VM image through its
// setup page in headless Chromium as a person would, then confirms the first config on the
// normal page.
//
// The box is reached at its own address (-box, https://192.168.1.1/) through qemu's
// forward (-forward 127.0.0.1:PORT): Chromium's --host-rules sends the connections there, so
// the page, its #continue link and the login cookie all see the address a person would use.
// It prints `vm-setup: <step> PASS` per step, or FAIL with what was seen, and exits 1 then.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/web/cdptest"
)

type options struct {
	box, forward, chromium, dir            string
	code, wrongCode, password, site        string
	primaryIf, primaryAddr, primaryGW, pbx string
	trunks, admin                          string
	timeout                                time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.box, "box", "https://192.168.1.1/", "the setup page's address, as a person types it")
	flag.StringVar(&o.forward, "forward", "", "HOST:PORT where the box's port 443 is reached (qemu's hostfwd)")
	flag.StringVar(&o.chromium, "chromium", "chromium", "the browser")
	flag.StringVar(&o.dir, "dir", "", "scratch directory: the browser's profile, a screenshot on failure")
	flag.StringVar(&o.code, "code", "", "the setup code, as the console shows it")
	flag.StringVar(&o.wrongCode, "wrong-code", "WRONG-CODE", "a code that is not the box's")
	flag.StringVar(&o.password, "password", "", "the status page's password to choose")
	flag.StringVar(&o.site, "site", "Page Office", "the site's name")
	flag.StringVar(&o.primaryIf, "primary-interface", "eth1", "the primary uplink's interface")
	flag.StringVar(&o.primaryAddr, "primary-address", "", "the primary uplink's static address (A.B.C.D/N)")
	flag.StringVar(&o.primaryGW, "primary-gateway", "", "the primary uplink's gateway")
	flag.StringVar(&o.pbx, "pbx", "192.168.1.10", "the PBX's address")
	flag.StringVar(&o.trunks, "trunks", "", "the trunk provider's networks or names, comma-separated")
	flag.StringVar(&o.admin, "admin", "", "the admin networks, comma-separated")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "bound of each wait")
	flag.Parse()
	if o.forward == "" || o.code == "" || o.password == "" || o.dir == "" || o.primaryAddr == "" || o.primaryGW == "" {
		fmt.Fprintln(os.Stderr, "vmsetup: -forward, -code, -password, -dir, -primary-address and -primary-gateway are needed")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Println("vm-setup:", err)
		os.Exit(1)
	}
}

// stepError is a failed step: its name and what was seen.
type stepError struct{ step, seen string }

func (e *stepError) Error() string { return e.step + " FAIL (" + e.seen + ")" }

func fail(step, format string, args ...any) error {
	return &stepError{step, fmt.Sprintf(format, args...)}
}

func pass(step string) { fmt.Printf("vm-setup: %s PASS\n", step) }

func run(o options) error {
	u, err := url.Parse(o.box)
	if err != nil || u.Scheme != "https" || u.Port() != "" {
		return fmt.Errorf("-box %q: want https://ADDRESS/", o.box)
	}
	// The box's certificate is its own (self-signed): accepted, as a person accepts it once.
	br := exec.Command(o.chromium, append(cdptest.ChromiumArgs, "--ignore-certificate-errors",
		"--host-rules=MAP "+u.Hostname()+":443 "+o.forward,
		"--user-data-dir="+filepath.Join(o.dir, "chromium"), "about:blank")...)
	br.Stdout, br.Stderr = io.Discard, io.Discard
	c, stop, err := cdptest.Start(br)
	if err != nil {
		return err
	}
	defer stop()
	p := &page{c: c, timeout: o.timeout}
	err = steps(p, o)
	if err != nil {
		if png, serr := c.Screenshot(); serr == nil {
			shot := filepath.Join(o.dir, "failed.png")
			if os.WriteFile(shot, png, 0o644) == nil {
				err = fmt.Errorf("%w; screenshot %s; the page said: %.600s", err, shot, strings.Join(strings.Fields(c.Text("body")), " "))
			}
		}
	}
	return err
}

func steps(p *page, o options) error {
	const open = "(b) setup page over https"
	if err := p.c.Open(o.box); err != nil {
		return fail(open, "%v", err)
	}
	if err := p.waitFor(func() bool { return p.c.Text("#apply") != "" }); err != nil {
		return fail(open, "no setup form at %s: %v", o.box, err)
	}
	if v, _ := p.c.Eval(`[...document.querySelectorAll("datalist option")].map(o => o.value).join(",")`); !strings.Contains(string(v), o.primaryIf) {
		return fail(open, "the uplink choices are %s, without %s (the VM's second NIC)", v, o.primaryIf)
	}
	pass(open)

	const wrong = "(b) setup page refuses a wrong code"
	if err := p.fillForm(o, o.wrongCode); err != nil {
		return fail(wrong, "%v", err)
	}
	if err := p.submit(); err != nil {
		return fail(wrong, "%v", err)
	}
	if err := p.waitFor(func() bool { return strings.Contains(strings.ToLower(p.c.Text("#errors")), "setup code") }); err != nil {
		return fail(wrong, "#errors says %q, #applied %q", p.c.Text("#errors"), p.c.Text("#applied"))
	}
	pass(wrong)

	const apply = "(b) setup page applies the answers with the right code"
	if err := p.fillForm(o, o.code); err != nil {
		return fail(apply, "%v", err)
	}
	if err := p.submit(); err != nil {
		return fail(apply, "%v", err)
	}
	applied := time.Now()
	if err := p.waitFor(func() bool { return p.c.Text("#applied") != "" }); err != nil {
		return fail(apply, "no #applied with the code %s; #errors says %q", o.code, p.c.Text("#errors"))
	}
	if got := p.c.Text("#applied"); !strings.Contains(got, "confirm") {
		return fail(apply, "#applied does not ask to confirm: %q", got)
	}
	if v, _ := p.c.Eval(`document.getElementById("continue").href`); string(v) != fmt.Sprintf("%q", o.box) {
		return fail(apply, "#continue goes to %s, not %s", v, o.box)
	}
	pass(apply)

	// The setup state stops its servers and the daemon starts from the new config: the
	// normal page answers on the same address after a while, as a person's reload finds.
	const normal = "(b) #continue leads to the normal page"
	if err := p.c.Click("#continue"); err != nil {
		return fail(normal, "%v", err)
	}
	last := time.Now()
	if err := p.waitFor(func() bool {
		v, _ := p.c.Eval(`!!document.getElementById("login-form") && !document.getElementById("setup")`)
		if string(v) == "true" {
			return true
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			_ = p.c.Call("Page.navigate", map[string]any{"url": o.box}, nil)
		}
		return false
	}); err != nil {
		return fail(normal, "no login form at %s %v after the setup page", o.box, err)
	}
	pass(normal)

	const login = "(b) log in on the normal page with the chosen password"
	if err := p.fill("password", o.password); err != nil {
		return fail(login, "%v", err)
	}
	if err := p.c.Click("#login"); err != nil {
		return fail(login, "%v", err)
	}
	if err := p.waitFor(p.visible("actions")); err != nil {
		return fail(login, "the actions did not appear; #login-msg says %q", p.c.Text("#login-msg"))
	}
	pass(login)

	const confirm = "(b) confirm the first config on the normal page"
	if err := p.waitFor(p.visible("cfg-pending")); err != nil {
		return fail(confirm, "no change waiting for confirmation; #cfg-msg says %q", p.c.Text("#cfg-msg"))
	}
	waiting := p.c.Text("#cfg-pending-text")
	if err := p.c.Click("#cfg-confirm"); err != nil {
		return fail(confirm, "%v", err)
	}
	if err := p.waitFor(func() bool { return strings.Contains(p.c.Text("#cfg-msg"), "confirmed") }); err != nil {
		return fail(confirm, "after Confirm, #cfg-msg says %q", p.c.Text("#cfg-msg"))
	}
	// The box itself says nothing waits any more (not only the page's own state).
	v, err := p.c.Eval(`fetch("/api/config", {credentials: "same-origin"}).then(r => r.json()).then(j => j.pending === null || j.pending === undefined)`)
	if err != nil || string(v) != "true" {
		return fail(confirm, "/api/config still has a pending change after Confirm (%s %v)", v, err)
	}
	pass(confirm)
	fmt.Printf("vm-setup: the change that waited: %s\n", waiting)
	fmt.Printf("vm-setup: figure: apply to confirmed %.0fs (the box's confirm window: 2 minutes)\n", time.Since(applied).Seconds())
	return nil
}

// page drives the box's pages as a person would.
type page struct {
	c       *cdptest.Browser
	timeout time.Duration
}

// waitFor polls cond until it holds, at most p.timeout.
func (p *page) waitFor(cond func() bool) error {
	deadline := time.Now().Add(p.timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", p.timeout)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return nil
}

func (p *page) visible(id string) func() bool {
	return func() bool {
		v, _ := p.c.Eval(fmt.Sprintf(`(() => { const e = document.getElementById(%q); return !!e && !e.hidden && !e.classList.contains("hidden"); })()`, id))
		return string(v) == "true"
	}
}

// fill types text into the field (emptied first, as select-all and typing over would).
func (p *page) fill(id, text string) error {
	if _, err := p.c.Eval(fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = ""; e.focus(); })()`, id)); err != nil {
		return fmt.Errorf("focus #%s: %w", id, err)
	}
	if err := p.c.TypeText(text); err != nil {
		return fmt.Errorf("type into #%s: %w", id, err)
	}
	return nil
}

// fillForm answers the setup form: the primary uplink static, no backup.
func (p *page) fillForm(o options, code string) error {
	lines := func(csv string) string { return strings.Join(strings.Split(csv, ","), "\n") }
	for _, f := range [][2]string{{"code", code}, {"site", o.site}, {"password", o.password}, {"password2", o.password},
		{"primary-interface", o.primaryIf}} {
		if err := p.fill(f[0], f[1]); err != nil {
			return err
		}
	}
	// A select, chosen with its change event (which shows the address fields).
	if _, err := p.c.Eval(`(() => { const e = document.getElementById("primary-mode"); e.value = "static";
		e.dispatchEvent(new Event("change")); })()`); err != nil {
		return fmt.Errorf("choose static in #primary-mode: %w", err)
	}
	for _, f := range [][2]string{{"primary-address", o.primaryAddr}, {"primary-gateway", o.primaryGW}, {"backup-interface", ""},
		{"pbx", o.pbx}, {"trunks", lines(o.trunks)}, {"admin", lines(o.admin)}} {
		if err := p.fill(f[0], f[1]); err != nil {
			return err
		}
	}
	return nil
}

// submit presses Apply and waits for the answer page to have loaded.
func (p *page) submit() error {
	if _, err := p.c.Eval(`window.__before = true`); err != nil {
		return err
	}
	if err := p.c.Click("#apply"); err != nil {
		return err
	}
	if err := p.waitFor(func() bool {
		v, err := p.c.Eval(`window.__before === undefined && document.readyState === "complete"`)
		return err == nil && string(v) == "true"
	}); err != nil {
		return fmt.Errorf("the form's answer did not load: %w", err)
	}
	return nil
}
