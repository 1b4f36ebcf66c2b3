package web_test

import (
	"os/exec"
	"testing"

	"github.com/officeedge/appliance/internal/web/cdptest"
)

// The DevTools driver is internal/web/cdptest (shared with the setup page's browser test);
// cdp adds this package's login to it.

// chromiumArgs are the flags of a headless Chromium the tests drive over the DevTools pipe.
var chromiumArgs = cdptest.ChromiumArgs

type cdp struct{ *cdptest.Browser }

// launch starts br (chromium with chromiumArgs, its last argument the first page) with the
// DevTools pipe, and kills it when the test ends.
func launch(t testing.TB, br *exec.Cmd) *cdp {
	t.Helper()
	return &cdp{cdptest.Launch(t, br)}
}

// shoot saves a screenshot of one element in the test's artifact directory
// (go test -artifacts -outputdir DIR keeps them).
func shoot(t *testing.T, c *cdp, sel, name string) {
	t.Helper()
	cdptest.Shoot(t, c.Browser, sel, name)
}

// logIn types the password into the page's login form and submits it, as a person would.
func (c *cdp) logIn(t *testing.T, password string) {
	t.Helper()
	if _, err := c.Eval(`document.getElementById("password").focus()`); err != nil {
		t.Fatal(err)
	}
	if err := c.TypeText(password); err != nil {
		t.Fatal(err)
	}
	if err := c.Click("#login"); err != nil {
		t.Fatal(err)
	}
}
