package web_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/notify/notifytest"
	"github.com/officeedge/appliance/internal/web"
	"github.com/officeedge/appliance/wan"
)

// withSettings puts settings into a section of a config: under its header if the file has
// one, in a new section at the end otherwise. A setting the section already has is replaced.
func withSettings(cfg, section string, settings ...string) string {
	lines := strings.Split(cfg, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == "["+section+"]" {
			start = i
		}
	}
	if start < 0 {
		return cfg + "\n[" + section + "]\n" + strings.Join(settings, "\n") + "\n"
	}
	keys := map[string]bool{}
	for _, st := range settings {
		k, _, _ := strings.Cut(st, "=")
		keys[strings.TrimSpace(k)] = true
	}
	var out []string
	out = append(out, lines[:start+1]...)
	out = append(out, settings...)
	inSection := true
	for _, l := range lines[start+1:] {
		if strings.HasPrefix(strings.TrimSpace(l), "[") {
			inSection = false
		}
		if k, _, ok := strings.Cut(l, "="); inSection && ok && keys[strings.TrimSpace(k)] {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// buildAppliance builds the daemon binary the lab runs.
func buildAppliance(t *testing.T) string {
	t.Helper()
	bin, err := build.Daemon(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// The status page in a real browser: headless Chromium on the office phone's network loads
// the page over HTTPS (pinning the box's own certificate) from the appliance running in the
// lab's box, shows the status while its event stream is refused, goes live, sees a forced
// failover and a button press appear without a reload, logs in and presses the simulated
// button. Plain HTTP serves the status only: a login there is refused.
func TestBrowserInLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces, nftables): run the suite with sudo")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("this test needs chromium (Debian package chromium): run scripts/setup.sh")
	}
	bin := buildAppliance(t)
	l := labtest.New(t)
	dir := t.TempDir()
	conf, state, sock := filepath.Join(dir, "appliance.toml"), filepath.Join(dir, "state"), filepath.Join(dir, "control.sock")
	// Health checks to the lab's probe target (answered by the internet core) and a short
	// stability time, so failback after "automatic" comes within the test's patience.
	cfg := withSettings(string(lab.Config), "wan", `targets = ["icmp:`+lab.Probe4+`", "tcp:`+lab.Probe4+`:80"]`, `stability = "2s"`)
	// The office's mail server is on the internet (the admin's host): a real SMTP server
	// with STARTTLS and AUTH, reached through the box's uplinks.
	smtpLn, err := l.ListenTCP(lab.HostAdmin, lab.Admin4+":587")
	if err != nil {
		t.Fatal(err)
	}
	mail := notifytest.Serve(t, smtpLn, net.ParseIP(lab.Admin4))
	cfg = withSettings(cfg, "notify", fmt.Sprintf("server = %q", mail.Addr), fmt.Sprintf("username = %q", notifytest.User),
		fmt.Sprintf("password = %q", notifytest.Password), `from = "box@office.example"`,
		`to = ["it@office.example", "boss@office.example"]`, fmt.Sprintf("ca_file = %q", mail.CAFile), `group = "1s"`)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	const password = "lab password 1"
	pw := exec.Command(bin, "web", "passwd", "--state", state, "--control", sock)
	pw.Stdin = strings.NewReader(password + "\n")
	if out, err := pw.CombinedOutput(); err != nil {
		t.Fatalf("appliance web passwd: %v\n%s", err, out)
	}
	d, err := l.Start(lab.HostBox, bin, "run", "--config", conf, "--state", state, "--control", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", l.Output(d))
		}
	}()
	page, plainPage := "https://"+lab.BoxLAN4+"/", "http://"+lab.BoxLAN4+"/"

	// The phone on the LAN reaches the page's API; the attacker on the internet does not.
	phone := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return l.DialTCP(lab.HostPhone, addr, 3*time.Second)
	}}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var st struct {
		Version  string
		Firewall struct{ Loaded bool }
		Active   string `json:"active_uplink"`
	}
	labtest.WaitFor(t, "the status API on the LAN (plain HTTP)", 20*time.Second, func() bool {
		resp, err := phone.Get(plainPage + "api/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&st) == nil
	})
	if !st.Firewall.Loaded {
		t.Errorf("status says the firewall is not loaded")
	}
	fp, spki := boxCert(t, state)
	pinned := func(host string) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: web.PinnedTLS(fp),
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return l.DialTCP(host, addr, 3*time.Second)
			}}}
	}
	httpsPhone := pinned(lab.HostPhone)
	checkHTTPS(t, phone, httpsPhone, page, plainPage, password, fp)

	// The admin's host on the internet reaches it on the uplink's address, on both ports.
	admin := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return l.DialTCP(lab.HostAdmin, addr, 3*time.Second)
	}}}
	for _, c := range []struct {
		client *http.Client
		url    string
	}{{admin, "http://" + lab.BoxWAN4 + "/api/status"}, {pinned(lab.HostAdmin), "https://" + lab.BoxWAN4 + "/api/status"}} {
		if resp, err := c.client.Get(c.url); err != nil || resp.StatusCode != 200 {
			t.Errorf("the admin network cannot reach %s on the uplink: %v %v", c.url, err, resp)
		} else {
			resp.Body.Close()
		}
	}
	for _, port := range []string{"80", "443"} {
		if c, err := l.DialTCP(lab.HostAttacker, lab.BoxWAN4+":"+port, time.Second); err == nil {
			c.Close()
			t.Errorf("the attacker reached the status page's port %s on the uplink", port)
		}
	}

	// The phone already holds every event stream one address may open: the page must show
	// the box all the same, from its status, and go live once a stream is free.
	streamsCtx, closeStreams := context.WithCancel(context.Background())
	defer closeStreams()
	for i := 0; i < 4; i++ {
		openStream(t, streamsCtx, httpsPhone, page)
	}

	// One browser for the whole test: Chromium starts slowly on two cores.
	br := l.Command(lab.HostPhone, append(append([]string{chromium}, chromiumArgs...),
		"--ignore-certificate-errors-spki-list="+spki, // trusts the box's own certificate, and only it
		"--user-data-dir="+filepath.Join(dir, "chromium"), "about:blank")...)
	var brLog labtest.LogBuffer
	br.Stdout, br.Stderr = io.Discard, &brLog
	c := launch(t, br)
	if err := c.Open(page); err != nil {
		t.Fatalf("open the page in chromium: %v\n%s", err, brLog.String())
	}
	labtest.WaitFor(t, "the page to show the status while its event stream is refused", 60*time.Second, func() bool {
		return c.Text("#active-uplink") == "FTTC" && strings.HasPrefix(c.Text("#live"), "not live")
	})
	if got := c.Text("#tls"); !strings.Contains(got, fp) {
		t.Errorf("the page shows the certificate as %q, want its fingerprint %s", got, fp)
	}
	closeStreams()
	labtest.WaitFor(t, "the page to go live (server-sent events)", 60*time.Second, func() bool { return c.Text("#live") == "live" })
	if v, _ := c.Eval("location.protocol"); string(v) != `"https:"` {
		t.Errorf("the page is served over %s, want https:", v)
	}
	if got := c.Text("#active-uplink"); got != "FTTC" {
		t.Errorf("active uplink on the page = %q, want FTTC", got)
	}
	if _, err := c.Eval("window.__noReload = 42"); err != nil {
		t.Fatal(err)
	}
	stillSamePage := func() {
		t.Helper()
		if v, _ := c.Eval("window.__noReload"); string(v) != "42" {
			t.Fatal("the page was reloaded")
		}
	}

	// Force the failover through the control API: the page follows by itself.
	labtest.WaitFor(t, "the wan part to accept forcing the backup", 30*time.Second, func() bool {
		_, err := control.Client{Socket: sock}.Force(control.ForceRequest{Mode: wan.ForceBackup})
		return err == nil
	})
	labtest.WaitFor(t, "the page to show the modem (LTE) carrying traffic", 30*time.Second, func() bool {
		return c.Text("#active-uplink") == "LTE" && strings.Contains(c.Text("#mode"), "forced")
	})
	stillSamePage()

	// Log in as a person would: type the password, click the button.
	c.logIn(t, password)
	labtest.WaitFor(t, "the actions to appear after login", 30*time.Second, func() bool {
		v, _ := c.Eval(`!document.getElementById("actions").classList.contains("hidden")`)
		return string(v) == "true"
	})

	// Press the simulated button on the page: a short press turns forced backup back to
	// automatic; the press and its result appear on the page.
	if err := c.Click("#press-short"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the button press and automatic mode on the page", 30*time.Second, func() bool {
		return strings.Contains(c.Text("#events"), "hal.button.short") && c.Text("#mode") == "automatic failover"
	})
	labtest.WaitFor(t, "failback to the fixed line on the page", 60*time.Second, func() bool { return c.Text("#active-uplink") == "FTTC" })

	// The CLI presses the same button: back to forced backup, seen on the page.
	out, err := exec.Command(bin, "button", "press", "--control", sock).CombinedOutput()
	if err != nil {
		t.Fatalf("appliance button press: %v\n%s", err, out)
	}
	labtest.WaitFor(t, "the CLI press to force the modem on the page", 30*time.Second, func() bool {
		return c.Text("#active-uplink") == "LTE" && strings.Contains(c.Text("#mode"), "forced")
	})
	stillSamePage()
	if got := c.Text("#led-uplink .pat"); got != "slow-blink" {
		t.Errorf("uplink LED on the page = %q, want slow-blink (forced modem)", got)
	}

	// Block an attacker from the page: the kernel's blocklist (read back over netlink) shows it.
	if _, err := c.Eval(`document.getElementById("block-addr").focus()`); err != nil {
		t.Fatal(err)
	}
	if err := c.TypeText(lab.Attacker4); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#block-form button"); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the blocked attacker in the page's blocklist, blocked by hand", 30*time.Second, func() bool {
		row := c.Text("#blocked")
		return strings.Contains(row, lab.Attacker4) && strings.Contains(row, "manual")
	})

	// A configuration change (reload with SIGHUP) shows on the page and in the audit log.
	changed := strings.Replace(cfg, `site = "Lab Office"`, `site = "Lab Office (renamed)"`, 1)
	if err := os.WriteFile(conf, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the new site name on the page", 30*time.Second, func() bool { return c.Text("#site") == "Lab Office (renamed)" })
	stillSamePage()

	png, err := c.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "status-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if out := os.Getenv("APPLIANCE_SCREENSHOT"); out != "" {
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The failback and the configuration change were emailed, over STARTTLS with a login, to
	// both recipients.
	labtest.WaitFor(t, "the alert emails", 30*time.Second, func() bool {
		var all string
		for _, m := range mail.Mails() {
			all += m.Header + m.Body
		}
		return strings.Contains(all, "failback") && strings.Contains(all, "config changed")
	})
	for _, m := range mail.Mails() {
		if !m.TLS || m.User != notifytest.User || strings.Join(m.To, ",") != "it@office.example,boss@office.example" {
			t.Errorf("email tls=%v user=%q to=%v", m.TLS, m.User, m.To)
		}
	}
	t.Logf("%d alert email(s) received; the first:\n%s", len(mail.Mails()), mail.Mails()[0].Body)

	// The audit log exports as CSV from the CLI, through the daemon and, with it stopped, from the file.
	csv, err := exec.Command(bin, "audit", "export", "--control", sock).Output()
	if err != nil || !strings.HasPrefix(string(csv), "time,who,from,via,what,before,after\n") || !strings.Contains(string(csv), "button.press") {
		t.Errorf("appliance audit export: %v\n%s", err, csv)
	}
	offline, err := exec.Command(bin, "audit", "export", "--control", filepath.Join(dir, "none.sock"), "--state", state).Output()
	if err != nil || string(offline) != string(csv) {
		t.Errorf("appliance audit export from the file: %v\n%s", err, offline)
	}

	// Every press is audited: the web one with the phone's address, the button's result, the CLI's.
	es, err := audit.Read(filepath.Join(state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range es {
		seen = append(seen, fmt.Sprintf("%s/%s/%s/%s", e.Via, e.Who, e.From, e.What))
	}
	all := strings.Join(seen, "\n")
	for _, e := range es {
		if e.Via == "config" && (e.Before != `site = "Lab Office"` || e.After != `site = "Lab Office (renamed)"`) {
			t.Errorf("config change audited with before %q after %q", e.Before, e.After)
		}
	}
	for _, want := range []string{"web/admin/" + lab.Phone4 + "/login", "web/admin/" + lab.Phone4 + "/button.press", "button/button/box/uplink.force", "cli/",
		"web/admin/" + lab.Phone4 + "/block", "config/root (SIGHUP reload)/box/config.changed"} {
		if !strings.Contains(all, want) {
			t.Errorf("audit log lacks %s:\n%s", want, all)
		}
	}
}

// boxCert waits for the certificate the daemon makes in its state directory and returns its
// SHA-256 fingerprint (web.CertFingerprint) and the base64 SHA-256 of its public key, as
// Chromium's --ignore-certificate-errors-spki-list takes it.
func boxCert(t *testing.T, state string) (fp, spki string) {
	t.Helper()
	var err error
	labtest.WaitFor(t, "the box's HTTPS certificate", 20*time.Second, func() bool {
		fp, err = web.CertFingerprint(state)
		return err == nil
	})
	b, err := os.ReadFile(filepath.Join(state, web.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s holds no PEM", web.CertFile)
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return fp, base64.StdEncoding.EncodeToString(sum[:])
}

// checkHTTPS checks what plain HTTP and HTTPS serve: over HTTP the page redirects to HTTPS
// and a login is refused; over HTTPS, pinned to the box's certificate, the same login works,
// with a Secure cookie and HSTS, and the status names the certificate.
func checkHTTPS(t *testing.T, plain, pinned *http.Client, page, plainPage, password, fp string) {
	t.Helper()
	resp, err := plain.Get(plainPage)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != page {
		t.Errorf("plain HTTP page: %d to %q, want a redirect to %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	body := `{"password":` + fmt.Sprintf("%q", password) + `}`
	if resp, err = plain.Post(plainPage+"api/login", "application/json", strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("login over plain HTTP: %d, cookies %v; want 403 and none", resp.StatusCode, resp.Cookies())
	}
	if resp, err = pinned.Post(page+"api/login", "application/json", strings.NewReader(body)); err != nil {
		t.Fatalf("login over HTTPS, pinned to %s: %v", fp, err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); resp.StatusCode != 200 || len(cs) != 1 || !cs[0].Secure || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("login over HTTPS: %d, cookies %v, HSTS %q", resp.StatusCode, cs, resp.Header.Get("Strict-Transport-Security"))
	}
	if resp, err = pinned.Get(page + "api/status"); err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		TLS struct {
			Fingerprint string `json:"fingerprint_sha256"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.TLS.Fingerprint != fp {
		t.Errorf("the status names the certificate %q (%v), want %s", st.TLS.Fingerprint, err, fp)
	}
}

// openStream opens the page's event stream and waits for its first status; it stays open
// until ctx ends.
func openStream(t *testing.T, ctx context.Context, c *http.Client, page string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", page+"api/events", nil)
	client := *c
	client.Timeout = 0 // a stream lasts
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	context.AfterFunc(ctx, func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("event stream: %d", resp.StatusCode)
	}
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			return
		}
	}
}
