package setup

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/cfgedit"
)

// post sends the form fields to h as a browser on the page's own origin would.
func post(h http.Handler, form url.Values, mod func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "https://192.168.1.1/setup", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://192.168.1.1")
	r.RemoteAddr = "192.168.1.100:50000"
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func goodForm() url.Values {
	return url.Values{"code": {"K7QM-3XWP"}, "site": {"Smith & Co"}, "password": {"a long password"}, "password2": {"a long password"},
		"primary-interface": {"eth1"}, "primary-mode": {"dhcp"}, "backup-interface": {""}, "backup-mode": {"dhcp"},
		"pbx": {"192.168.1.20"}, "trunks": {"192.0.2.0/28\r\nsip.provider.example\r\n"}, "admin": {""}}
}

// errorsOf is the text of the page's #errors list.
func errorsOf(body string) string {
	m := regexp.MustCompile(`(?s)<ul id="errors">(.*?)</ul>`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestPageRefusals: the code is checked before anything else is done with the answers; a
// big body, another site's form, a locked address and a config the editor refuses each
// get their words, and nothing is applied.
func TestPageRefusals(t *testing.T) {
	var checks, applies int
	checkErr := error(nil)
	applyErr := error(nil)
	h := NewPage(PageOptions{
		Check: func(remote, code string) error {
			checks++
			if remote != "192.168.1.100:50000" {
				t.Errorf("Check got remote %q", remote)
			}
			if checkErr != nil {
				return checkErr
			}
			if code != "K7QM-3XWP" {
				return ErrWrongCode
			}
			return nil
		},
		Apply: func(_ context.Context, _ []byte, by string) error {
			applies++
			return applyErr
		},
		LAN: "eth0",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})

	big := goodForm()
	big.Set("site", strings.Repeat("x", 70<<10))
	if w := post(h, big, nil); w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(errorsOf(w.Body.String()), "64 KiB") || checks != 0 {
		t.Errorf("a 70 KiB form: %d, %q, %d checks", w.Code, errorsOf(w.Body.String()), checks)
	}
	if w := post(h, goodForm(), func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }); w.Code != http.StatusForbidden || checks != 0 {
		t.Errorf("another site's form: %d, %d checks", w.Code, checks)
	}
	wrong := goodForm()
	wrong.Set("code", "NOPE")
	wrong.Set("primary-address", `"><script>alert(1)</script>`)
	w := post(h, wrong, nil)
	body := w.Body.String()
	if w.Code != http.StatusForbidden || !strings.Contains(errorsOf(body), "Setup code: is not the box&#39;s setup code") {
		t.Errorf("a wrong code: %d, %q", w.Code, errorsOf(body))
	}
	if strings.Contains(body, "<script>alert") || !strings.Contains(body, `value="Smith &amp; Co"`) || strings.Contains(body, "NOPE") || strings.Contains(body, "a long password") {
		t.Errorf("the refused form shows the answers wrongly (escaped, kept, never the code or password):\n%s", body)
	}
	checkErr = ErrLocked
	if w := post(h, goodForm(), nil); w.Code != http.StatusTooManyRequests || !strings.Contains(errorsOf(w.Body.String()), "wait 15 minutes") {
		t.Errorf("locked: %d, %q", w.Code, errorsOf(w.Body.String()))
	}
	checkErr = nil
	mismatch := goodForm()
	mismatch.Set("password2", "another long one")
	if w := post(h, mismatch, nil); w.Code != http.StatusUnprocessableEntity || !strings.Contains(errorsOf(w.Body.String()), "Password (again): is not the same") {
		t.Errorf("passwords differ: %d, %q", w.Code, errorsOf(w.Body.String()))
	}
	if applies != 0 {
		t.Fatalf("%d applies of refused forms", applies)
	}

	// The editor's own check refuses: its problems land on the form's fields.
	applyErr = &cfgedit.CheckError{Err: errors.New("refused"), Check: cfgedit.Check{Errors: []cfgedit.Problem{
		{Field: "uplink.primary.interface", Msg: "no such port"}, {Field: "wan.targets", Msg: "odd"}}}}
	w = post(h, goodForm(), nil)
	if e := errorsOf(w.Body.String()); w.Code != http.StatusUnprocessableEntity || !strings.Contains(e, `data-field="primary-interface">Main internet line: port: no such port`) ||
		!strings.Contains(e, "wan.targets: odd") {
		t.Errorf("a refused candidate: %d, %q", w.Code, e)
	}
	applyErr = nil
	w = post(h, goodForm(), func(r *http.Request) { r.Host, r.Header["Origin"] = "10.0.0.57:443", []string{"https://10.0.0.57:443"} })
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="continue" href="https://10.0.0.57/"`) {
		t.Errorf("applied on a leased address: %d, continue link %q", w.Code, regexp.MustCompile(`id="continue"[^>]*`).FindString(w.Body.String()))
	}
	if w := post(h, goodForm(), nil); w.Code != http.StatusConflict || applies != 2 {
		t.Errorf("a second apply: %d, %d applies", w.Code, applies)
	}
}

// TestPageStatusAndHeaders: /api/status says setup; the page's inline style and script are
// the ones its Content-Security-Policy allows.
func TestPageStatusAndHeaders(t *testing.T) {
	h := NewPage(PageOptions{Version: "1.2.3", LAN: "eth0"})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/status", nil))
	var st struct {
		Setup    bool   `json:"setup"`
		Version  string `json:"version"`
		Site     string `json:"site"`
		Firewall struct {
			Loaded bool `json:"loaded"`
		} `json:"firewall"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || !st.Setup || st.Version != "1.2.3" || st.Site != "" || !st.Firewall.Loaded {
		t.Errorf("/api/status: %s (%v)", w.Body, err)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	body, policy := w.Body.String(), w.Header().Get("Content-Security-Policy")
	for _, tag := range []string{"style", "script"} {
		m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no <%s>", tag)
		}
		sum := sha256.Sum256([]byte(m[1]))
		if !strings.Contains(policy, tag+"-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
			t.Errorf("the policy %q does not allow the page's <%s>", policy, tag)
		}
	}
	if !strings.Contains(policy, "default-src 'none'") || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", w.Header())
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/status", nil))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Errorf("GET /status: %d %q", w.Code, w.Header().Get("Location"))
	}
}

// TestContinueHost: the link to the normal page keeps the host the person typed, and only
// a plain address or name.
func TestContinueHost(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.1.1": "192.168.1.1", "192.168.1.1:443": "192.168.1.1", "[fd00:1::1]:443": "[fd00:1::1]", "edge.office.lan": "edge.office.lan",
		`evil"host`: "192.168.1.1", "a/b": "192.168.1.1", "[fe80::1%eth0]": "192.168.1.1", "": "192.168.1.1", "x@y": "192.168.1.1",
		strings.Repeat("a", 300): "192.168.1.1",
	} {
		if got := continueHost(in); got != want {
			t.Errorf("continueHost(%q) = %q, want %q", in, got, want)
		}
	}
}
