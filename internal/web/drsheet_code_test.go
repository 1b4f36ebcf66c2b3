package web

import (
	"html"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDRSheetSetupCode: a box that went through the setup page has its setup code on the
// sheet, for a logged-in person only (the sheet is open to the LAN).
func TestDRSheetSetupCode(t *testing.T) {
	e := newEnv(t)
	const line = "Setup code (if the box is ever reset to setup): K7QM-3XWP"
	if w := e.req("GET", "/dr-sheet.txt", lan, "", nil); strings.Contains(w.Body.String(), "Setup code") {
		t.Errorf("a setup code on the sheet of a box without one:\n%s", w.Body)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "setup-code"), []byte("K7QM3XWP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := e.req("GET", "/dr-sheet", lan, "", nil)
	if page := html.UnescapeString(w.Body.String()); strings.Contains(page, "K7QM") || !strings.Contains(page, "log in on the status page") {
		t.Errorf("the sheet without a login: %d\n%s", w.Code, page)
	}
	ok := loggedIn(t, e)
	for _, path := range []string{"/dr-sheet", "/dr-sheet.txt"} {
		w := e.req("GET", path, lan, "", map[string]string{"Cookie": ok["Cookie"]})
		if page := html.UnescapeString(w.Body.String()); w.Code != 200 || !strings.Contains(page, line) {
			t.Errorf("%s logged in: %d, lacks %q", path, w.Code, line)
		}
	}
	// Not a code (a file someone put there): nothing shown.
	if err := os.WriteFile(filepath.Join(e.dir, "setup-code"), []byte("<script>x</script>"), 0o600); err != nil {
		t.Fatal(err)
	}
	if w := e.req("GET", "/dr-sheet", lan, "", map[string]string{"Cookie": ok["Cookie"]}); strings.Contains(w.Body.String(), "Setup code") {
		t.Errorf("a bad setup-code file shown")
	}
}

// TestDRSheetUpdatePassword: the box's own update password (a box from a generic image makes
// one at its first boot) is on the sheet of a logged-in person only.
func TestDRSheetUpdatePassword(t *testing.T) {
	e := newEnv(t)
	pwFile := filepath.Join(t.TempDir(), "gokr-pw.txt")
	e.s.o.UpdatePasswordFile = pwFile
	if err := os.WriteFile(pwFile, []byte("Zq3-box-own_pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const line = "Update password (gokrazy, LAN port 8080; scripts/update-box --password-file): Zq3-box-own_pw"
	if w := e.req("GET", "/dr-sheet.txt", lan, "", nil); strings.Contains(w.Body.String(), "Zq3") || !strings.Contains(w.Body.String(), "log in") {
		t.Errorf("the sheet without a login:\n%s", w.Body)
	}
	ok := loggedIn(t, e)
	if w := e.req("GET", "/dr-sheet.txt", lan, "", map[string]string{"Cookie": ok["Cookie"]}); !strings.Contains(w.Body.String(), line) {
		t.Errorf("the sheet logged in lacks %q:\n%s", line, w.Body)
	}
}
