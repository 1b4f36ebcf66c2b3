package web

import (
	"context"
	"crypto/tls"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/backup"
)

// backupStatus is a status with a fresh s3 copy and an sftp one of the given age.
func backupStatus(now time.Time, sftpAge time.Duration, stale bool) backup.Status {
	fresh := backup.Entry{File: "pbx/threecx/3CXBackup.zip", Size: 3 << 20, Verified: now.Add(-time.Hour)}
	old := backup.Entry{File: "box/box-1.tar.gz", Size: 4096, Verified: now.Add(-sftpAge)}
	return backup.Status{Enabled: true, Dir: "/perm/backup", NextRun: now.Add(14 * time.Hour), MaxAge: "26h0m0s",
		PBX: []backup.PBXStatus{{Name: "threecx", Mode: "push"}},
		Destinations: []backup.DestStatus{
			{Name: "s3", Kind: "s3", Where: "s3://s3.example/bucket/", Copies: 3, Newest: &fresh, AgeS: time.Hour.Seconds()},
			{Name: "sftp", Kind: "sftp", Where: "sftp://office@backup.example.net:22/office", Copies: 1, Newest: &old, AgeS: sftpAge.Seconds(),
				Stale: stale, LastError: "ssh: handshake failed"},
		}}
}

func backupItem(t *testing.T, e *env) Check {
	t.Helper()
	for _, c := range e.status(t).Checklist {
		if c.ID == "backups" {
			return c
		}
	}
	t.Fatal("no backups item in the checklist")
	return Check{}
}

// TestBackupChecklist: the item is real: ok while every destination has a verified copy
// within max age, failed when one is older, not running, or not configured.
func TestBackupChecklist(t *testing.T) {
	e := newEnv(t)
	if c := backupItem(t, e); c.Result != "fail" || !strings.Contains(c.Detail, "not running") {
		t.Errorf("part not running: %+v", c)
	}
	e.s.o.Backups = func() (backup.Status, bool) { return backupStatus(e.now, 2*time.Hour, false), true }
	if c := backupItem(t, e); c.Result != "ok" || !strings.Contains(c.Detail, "s3") {
		t.Errorf("fresh copies: %+v", c)
	}
	e.s.o.Backups = func() (backup.Status, bool) { return backupStatus(e.now, 27*time.Hour, true), true }
	if c := backupItem(t, e); c.Result != "fail" || !strings.Contains(c.Detail, "sftp") || !strings.Contains(c.Detail, "27h") || c.Fix == "" {
		t.Errorf("a 27 h old copy: %+v", c)
	}
	// The API, and /metrics.
	w := e.req("GET", "/api/backups", lan, "", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"stale": true`) {
		t.Errorf("/api/backups: %d %s", w.Code, w.Body)
	}
	m := e.req("GET", "/metrics", lan, "", nil).Body.String()
	for _, want := range []string{`appliance_backup_stale{destination="sftp"} 1`, `appliance_backup_stale{destination="s3"} 0`,
		`appliance_backup_copies{destination="s3"} 3`, `appliance_backup_newest_verified_timestamp_seconds{destination="s3"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestDRSheet: the printable sheet says who to call, where each copy is and how to restore
// it, what the LEDs mean, how to force the modem and how to reinstall the box.
func TestDRSheet(t *testing.T) {
	e := newEnv(t)
	e.s.o.Backups = func() (backup.Status, bool) { return backupStatus(e.now, 2*time.Hour, false), true }
	w := e.req("GET", "/dr-sheet", lan, "", nil)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("/dr-sheet: %d %s", w.Code, w.Header())
	}
	page := html.UnescapeString(w.Body.String())
	for _, want := range []string{"Example Office", "+44 800 000 0001 (account 123456)", "acme_trunk", "+44 800 000 0003",
		"s3://s3.eu-central-1.amazonaws.com:443/office-pbx-backups/", "appliance backup restore --destination sftp --identity KEYFILE",
		"envelope A", "two short flashes every 2 s", "appliance wan force backup", "scripts/build-image", "/perm/backup", "/dr-sheet.css"} {
		if !strings.Contains(page, want) {
			t.Errorf("the sheet lacks %q", want)
		}
	}
	if w := e.req("GET", "/dr-sheet.txt", lan, "", nil); !strings.Contains(w.Body.String(), "== What the lights on the box mean ==") {
		t.Errorf("/dr-sheet.txt: %s", w.Body)
	}
	if w := e.req("GET", "/dr-sheet", "203.0.113.99", "", nil); w.Code != http.StatusForbidden {
		t.Errorf("the sheet is served to the internet: %d", w.Code)
	}
}

// TestBackupPanelAndDRSheetInBrowser loads the page and the sheet in headless Chromium:
// the Backups panel shows each destination from /api/backups, and the sheet renders.
func TestBackupPanelAndDRSheetInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("this test needs chromium (Debian package chromium): run scripts/setup.sh")
	}
	e := newEnv(t)
	e.s.o.Backups = func() (backup.Status, bool) { return backupStatus(e.now, 27*time.Hour, true), true }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// No event stream: Chromium's virtual time stands still while a request is open, and
	// the panel reads /api/backups by itself.
	h := e.s.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/events" {
			http.Error(w, "no stream in this test", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{}
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	browse := func(path string, extra ...string) string {
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + filepath.Join(dir, "chromium"),
			"--ignore-certificate-errors", "--hide-scrollbars", "--window-size=1280,1400", "--timeout=6000", "--virtual-time-budget=3000"}, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, chromium, append(args, srv.URL+path)...).Output()
		if err != nil {
			t.Fatalf("chromium %s: %v", path, err)
		}
		return string(out)
	}
	dom := browse("/", "--dump-dom")
	for _, want := range []string{"3CXBackup.zip", "sftp://office@backup.example.net:22/office", "stale", "ssh: handshake failed", "threecx (push)"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the Backups panel lacks %q", want)
		}
	}
	sheet := browse("/dr-sheet", "--dump-dom")
	if !strings.Contains(sheet, "What the lights on the box mean") || !strings.Contains(sheet, "+44 800 000 0002") {
		t.Errorf("the sheet in the browser:\n%.2000s", sheet)
	}
	if shots := os.Getenv("BACKUP_SCREENSHOTS"); shots != "" { // for a person to look at
		browse("/", "--screenshot="+filepath.Join(shots, "backups-panel.png"), "--window-size=1280,3400")
		browse("/dr-sheet", "--screenshot="+filepath.Join(shots, "dr-sheet.png"), "--print-to-pdf-no-header")
	}
}
