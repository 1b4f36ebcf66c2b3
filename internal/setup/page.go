package setup

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/officeedge/appliance/internal/cfgedit"
)

// PageOptions are what the setup page is given by Serve.
type PageOptions struct {
	Check      func(remote, code string) error                              // nil if right; ErrLocked / ErrWrongCode
	Interfaces func() []string                                              // the box's links other than lo and the setup LAN, for the uplink choice
	BootErrors func() []string                                              // errors of a rejected boot-partition config, if any
	Apply      func(ctx context.Context, candidate []byte, by string) error // a refused candidate returns *cfgedit.CheckError
	Version    string
	LAN        string      // the setup LAN interface name (shown, and the config's [lan] interface)
	ServesDHCP func() bool // the setup state serves the LAN's addresses: the first config keeps doing so
	Log        *slog.Logger
}

// Bounds on what one request may make the page read or show.
const (
	maxBody       = 64 << 10 // the whole POST
	maxShown      = 4 << 10  // bytes of one typed value shown again in the form
	maxBootErrors = 50       // lines of the boot partition's errors shown
	maxBootLine   = 512      // bytes of one of them
)

// NewPage is the setup page: GET / the form, POST /setup to apply it, GET /api/status for
// tools and tests. Everything it serves is inline: the box has nothing else to serve yet.
func NewPage(o PageOptions) http.Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &page{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.handleForm)
	mux.HandleFunc("POST /setup", p.handleApply)
	mux.HandleFunc("GET /api/status", p.handleStatus)
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		// Any other page of the box (a bookmark of the status page, say) leads to the form.
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	return securityHeaders(mux)
}

type page struct {
	o    PageOptions
	mu   sync.Mutex // one render and apply at a time: argon2 takes 64 MiB each
	done bool       // a config was applied: the box is leaving the setup state
}

// pageData is what the template shows.
type pageData struct {
	Version    string
	LAN        string
	LANAddress string // the box's on the LAN, in the first config as in setup
	LANNet     string
	Interfaces []string
	BootErrors []string
	V          map[string]string // what was typed, by field id (never the password or code)
	Errors     FieldErrors
	Bad        map[string]bool // fields with an error
	Applied    bool
	Window     string // how long the person has to confirm, in words
	WindowSecs int
	Continue   string // the normal page, at the host the person used
}

func (p *page) data() pageData {
	d := pageData{Version: p.o.Version, LAN: p.o.LAN, LANAddress: LANAddress.Addr().String(), LANNet: LANAddress.Masked().String(),
		V: map[string]string{}, Bad: map[string]bool{}}
	if p.o.Interfaces != nil {
		d.Interfaces = p.o.Interfaces()
	}
	if p.o.BootErrors != nil {
		for i, e := range p.o.BootErrors() {
			if i == maxBootErrors {
				d.BootErrors = append(d.BootErrors, "(more in appliance.toml.errors.txt on the SD card)")
				break
			}
			d.BootErrors = append(d.BootErrors, clip(e, maxBootLine))
		}
	}
	return d
}

func (p *page) handleForm(w http.ResponseWriter, r *http.Request) {
	d := p.data()
	d.V[fieldPriMode], d.V[fieldBakMode] = "dhcp", "dhcp"
	p.render(w, http.StatusOK, d)
}

func (p *page) handleStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"setup": true, "version": p.o.Version, "site": "",
		"firewall": map[string]bool{"loaded": true}})
}

// formFields are the fields read from a POST; the code and the passwords are never shown again.
var formFields = []string{fieldSite, fieldPriIf, fieldPriMode, fieldPriAddr, fieldPriGw,
	fieldBakIf, fieldBakMode, fieldBakAddr, fieldBakGw, fieldPBX, fieldTrunks, fieldAdmin}

func (p *page) handleApply(w http.ResponseWriter, r *http.Request) {
	d := p.data()
	fail := func(status int, errs FieldErrors) {
		d.Errors = errs
		for _, e := range errs {
			d.Bad[e.Field] = true
		}
		p.render(w, status, d)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		fail(http.StatusRequestEntityTooLarge, FieldErrors{{"", fmt.Sprintf("The form could not be read (it may be over %d KiB): shorten the answers and send it again.", maxBody>>10)}})
		return
	}
	for _, f := range formFields {
		d.V[f] = clip(r.PostForm.Get(f), maxShown)
	}
	if !sameOrigin(r) {
		fail(http.StatusForbidden, FieldErrors{{"", "The form came from another web page: open this page from the box's address and send it from there."}})
		return
	}
	remote := r.RemoteAddr
	if err := p.check(remote, r.PostForm.Get(fieldCode)); err != nil {
		status := http.StatusForbidden
		if errors.Is(err, ErrLocked) {
			status = http.StatusTooManyRequests
		}
		fail(status, FieldErrors{{fieldCode, codeErrMsg(err)}})
		return
	}
	if !p.mu.TryLock() {
		fail(http.StatusServiceUnavailable, FieldErrors{{"", "The box is busy with another setup request: wait a few seconds and send the form again."}})
		return
	}
	defer p.mu.Unlock()
	if p.done {
		fail(http.StatusConflict, FieldErrors{{"", "A configuration was applied already: the box is starting with it. Open the box's page to log in and confirm it."}})
		return
	}
	var errs FieldErrors
	if r.PostForm.Get(fieldPassword) != r.PostForm.Get(fieldPassword2) {
		errs = append(errs, FieldError{fieldPassword2, "is not the same as the password: type both again"})
	}
	a := answersOf(r.PostForm, p.o.LAN)
	a.DHCP = p.o.ServesDHCP != nil && p.o.ServesDHCP()
	candidate, err := Render(a)
	if err != nil {
		errs = append(errs, asFieldErrors(err)...)
	}
	if len(errs) > 0 {
		fail(http.StatusUnprocessableEntity, errs)
		return
	}
	who := "setup page from " + hostOf(remote)
	if p.o.Apply == nil {
		fail(http.StatusInternalServerError, FieldErrors{{"", "This box cannot apply a configuration from the page (no Apply): report it."}})
		return
	}
	if err := p.o.Apply(r.Context(), candidate, who); err != nil {
		p.o.Log.Warn("setup page: the configuration was refused", "by", who, "err", err)
		fail(http.StatusUnprocessableEntity, applyErrors(err))
		return
	}
	p.done = true
	p.o.Log.Info("setup page: first configuration applied", "by", who)
	d.Applied = true
	d.WindowSecs = int(cfgedit.DefaultWindow / time.Second)
	d.Window = inWords(cfgedit.DefaultWindow)
	d.Continue = "https://" + continueHost(r.Host) + "/"
	p.render(w, http.StatusOK, d)
}

// check asks PageOptions.Check; without one no code is ever right.
func (p *page) check(remote, code string) error {
	if p.o.Check == nil {
		return errors.New("setup: the page has no code check")
	}
	return p.o.Check(remote, code)
}

// codeErrMsg says what a refused code means and what to do.
func codeErrMsg(err error) string {
	switch {
	case errors.Is(err, ErrLocked):
		return fmt.Sprintf("too many wrong codes from this computer: wait %s and try again.", inWords(lockout))
	case errors.Is(err, ErrWrongCode):
		return "is not the box's setup code. It is shown on a screen plugged into the box (its console) and on the disaster-recovery sheet; dashes and capitals don't matter."
	}
	return "could not be checked: " + err.Error()
}

// answersOf reads the form's answers; the lists are one entry a line.
func answersOf(f url.Values, lan string) Answers {
	lines := func(s string) []string {
		return strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	}
	return Answers{
		Site: f.Get(fieldSite), Password: f.Get(fieldPassword), LAN: lan,
		PrimaryInterface: f.Get(fieldPriIf), PrimaryMode: f.Get(fieldPriMode),
		PrimaryAddress: f.Get(fieldPriAddr), PrimaryGateway: f.Get(fieldPriGw),
		BackupInterface: f.Get(fieldBakIf), BackupMode: f.Get(fieldBakMode),
		BackupAddress: f.Get(fieldBakAddr), BackupGateway: f.Get(fieldBakGw),
		PBXAddress: f.Get(fieldPBX), Trunks: lines(f.Get(fieldTrunks)), Admin: lines(f.Get(fieldAdmin)),
	}
}

// asFieldErrors is Render's error as the form's.
func asFieldErrors(err error) FieldErrors {
	var fe FieldErrors
	if errors.As(err, &fe) {
		return fe
	}
	return FieldErrors{{"", err.Error()}}
}

// applyErrors is Apply's refusal as the form's errors.
func applyErrors(err error) FieldErrors {
	var ce *cfgedit.CheckError
	if !errors.As(err, &ce) {
		return FieldErrors{{"", "The box could not take the configuration: " + err.Error()}}
	}
	if errors.Is(ce.Err, cfgedit.ErrWidening) || len(ce.Check.Errors) == 0 {
		return FieldErrors{{"", "The box refused the configuration: " + ce.Err.Error()}}
	}
	out := make(FieldErrors, 0, len(ce.Check.Errors))
	for _, pr := range ce.Check.Errors {
		out = append(out, problem(pr.Field, pr.Msg))
	}
	return out
}

// sameOrigin refuses a form posted from another site's page; a browser sends Origin with
// every POST (a tool without it is let through: it had to know the code anyway).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// continueHost is the host the person used for the page (the normal page will be at the
// same address), or the setup LAN address when it is not a plain address or name.
func continueHost(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(host); err == nil && a.Zone() == "" {
		if a.Is6() && !a.Is4In6() {
			return "[" + a.String() + "]"
		}
		return a.Unmap().String()
	}
	if host != "" && len(host) <= 253 && strings.Trim(strings.ToLower(host), "abcdefghijklmnopqrstuvwxyz0123456789.-") == "" {
		return host
	}
	return LANAddress.Addr().String()
}

// hostOf is remote's address without its port.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return clip(remote, 64)
}

// inWords is a duration as the page says it: "2 minutes", "15 minutes", "90 seconds".
func inWords(d time.Duration) string {
	switch {
	case d == time.Minute:
		return "1 minute"
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	return fmt.Sprintf("%d seconds", int(d/time.Second))
}

// clip cuts s to at most n bytes, on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (p *page) render(w http.ResponseWriter, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pageTmpl.Execute(w, d); err != nil {
		p.o.Log.Debug("setup page: write", "err", err)
	}
}

// csp allows only the page's own inline style and script (by hash): no other source, no
// framing, forms posted to the box only.
var csp = "default-src 'none'; style-src " + cspHash(pageCSS) + "; script-src " + cspHash(pageJS) +
	"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func cspHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin") // no-referrer would make the form's Origin "null"
		h.Set("Cache-Control", "no-store")      // the form holds what was typed
		next.ServeHTTP(w, r)
	})
}
