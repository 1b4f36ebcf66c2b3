package web_test

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/officeedge/appliance/internal/web/cdptest"
)

// The DevTools driver is internal/web/cdptest (shared with the setup page's browser test);
// these are its names in this package's tests.

// chromiumArgs are the flags of a headless Chromium the tests drive over the DevTools pipe.
var chromiumArgs = cdptest.ChromiumArgs

type cdp struct{ *cdptest.Browser }

// launch starts br (chromium with chromiumArgs, its last argument the first page) with the
// DevTools pipe, and kills it when the test ends.
func launch(t testing.TB, br *exec.Cmd) *cdp {
	t.Helper()
	return &cdp{cdptest.Launch(t, br)}
}

func (c *cdp) call(method string, params, result any) error { return c.Call(method, params, result) }
func (c *cdp) open(url string) error                        { return c.Open(url) }
func (c *cdp) eval(expr string) (json.RawMessage, error)    { return c.Eval(expr) }
func (c *cdp) text(selector string) string                  { return c.Text(selector) }
func (c *cdp) click(selector string) error                  { return c.Click(selector) }
func (c *cdp) typeText(s string) error                      { return c.TypeText(s) }
func (c *cdp) screenshot() ([]byte, error)                  { return c.Screenshot() }

// shoot saves a screenshot of one element in the test's artifact directory
// (go test -artifacts -outputdir DIR keeps them).
func shoot(t *testing.T, c *cdp, sel, name string) {
	t.Helper()
	cdptest.Shoot(t, c.Browser, sel, name)
}

// logIn types the password into the page's login form and submits it, as a person would.
func (c *cdp) logIn(t *testing.T, password string) {
	t.Helper()
	if _, err := c.eval(`document.getElementById("password").focus()`); err != nil {
		t.Fatal(err)
	}
	if err := c.typeText(password); err != nil {
		t.Fatal(err)
	}
	if err := c.click("#login"); err != nil {
		t.Fatal(err)
	}
}
