package web

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// exampleConfig is a fresh copy of the example configuration.
func exampleConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse("example.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// readLeaf parses the certificate in the box's certificate file.
func readLeaf(t *testing.T, dir string) (*x509.Certificate, os.FileInfo) {
	t.Helper()
	path := filepath.Join(dir, CertFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s does not start with a certificate", path)
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	return leaf, fi
}

func fingerprintOf(t *testing.T, c *Certs) string {
	t.Helper()
	ci, ok := c.Info()
	if !ok {
		t.Fatal("no certificate served")
	}
	return ci.Fingerprint
}

// The box makes its own certificate on first start (ECDSA P-256, self-signed, naming its LAN
// and uplink addresses and host names), keeps it in the state directory, reuses it, and makes
// it again when its addresses change or its end nears.
func TestCertMadeKeptRemade(t *testing.T) {
	cfg := exampleConfig(t)
	cfg.Web.Hostnames = []string{"Edge.Office.LAN."}
	dir := t.TempDir()
	c := NewCerts(dir)
	if err := c.Ensure(cfg); err != nil {
		t.Fatal(err)
	}
	leaf, fi := readLeaf(t, dir)
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"192.168.1.1", "198.51.100.2", "fd00:1::1"}; !slices.Equal(ips, want) || !slices.Equal(leaf.DNSNames, []string{"edge.office.lan"}) {
		t.Errorf("names %v %v, want %v and edge.office.lan (the LAN's, the static uplink's, [web] hostnames)", ips, leaf.DNSNames, want)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("extended key usage %v lacks server auth", leaf.ExtKeyUsage)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("certificate file mode %v, want 0600 (it holds the key)", fi.Mode().Perm())
	}
	fp, err := CertFingerprint(dir)
	if err != nil || fp != fingerprintOf(t, c) || fp != Fingerprint(leaf.Raw) || len(fp) != 95 {
		t.Fatalf("CertFingerprint = %q %v, served %q", fp, err, fingerprintOf(t, c))
	}

	// A later start reuses it.
	again := NewCerts(dir)
	if err := again.Ensure(cfg); err != nil || fingerprintOf(t, again) != fp {
		t.Errorf("second start: %v, fingerprint %s, want the same %s", err, fingerprintOf(t, again), fp)
	}
	// New LAN address: a new certificate, saved.
	cfg.LAN.Addresses[0] = config.Prefix{Prefix: netip.MustParsePrefix("192.168.2.1/24")}
	if err := again.Ensure(cfg); err != nil {
		t.Fatal(err)
	}
	moved := fingerprintOf(t, again)
	if saved, _ := CertFingerprint(dir); moved == fp || saved != moved {
		t.Errorf("after the LAN moved: served %s, saved %s, before %s", moved, saved, fp)
	}
	if leaf, _ := readLeaf(t, dir); leaf.IPAddresses[0].String() != "192.168.2.1" {
		t.Errorf("new certificate names %v", leaf.IPAddresses)
	}
	// Near its end: a new one.
	late := NewCerts(dir)
	late.now = func() time.Time { return time.Now().Add(certLife - certRenew + time.Hour) }
	if err := late.Ensure(cfg); err != nil || fingerprintOf(t, late) == moved {
		t.Errorf("near the end: %v, still %s", err, moved)
	}
	// A damaged file: a new one.
	if err := os.WriteFile(filepath.Join(dir, CertFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := NewCerts(dir)
	if err := fresh.Ensure(cfg); err != nil {
		t.Fatal(err)
	}
	if saved, err := CertFingerprint(dir); err != nil || saved != fingerprintOf(t, fresh) {
		t.Errorf("after a damaged file: saved %s %v, served %s", saved, err, fingerprintOf(t, fresh))
	}
}

// A certificate that cannot be saved is served all the same, with the problem said.
func TestCertUnsaved(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := NewCerts(filepath.Join(blocker, "state")) // a directory under a file cannot be made
	err := c.Ensure(exampleConfig(t))
	ci, ok := c.Info()
	if err == nil || !ok || !ci.SelfSigned || !strings.Contains(ci.Error, "save the HTTPS certificate") {
		t.Errorf("Ensure = %v, served %+v, want an error and a certificate served anyway", err, ci)
	}
}

// [web] cert_file and key_file are served instead of the box's own; unusable ones fall back
// to the box's own, with the problem said.
func TestCertFromFiles(t *testing.T) {
	dir := t.TempDir()
	_, file, err := makeCert([]netip.Addr{netip.MustParseAddr("192.168.1.1")}, []string{"edge.example"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, rest := pem.Decode(file)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(certPEM), 0o644)
	os.WriteFile(keyFile, rest, 0o600)
	cfg := exampleConfig(t)
	cfg.Web.CertFile, cfg.Web.KeyFile = certFile, keyFile
	state := filepath.Join(dir, "state")
	c := NewCerts(state)
	if err := c.Ensure(cfg); err != nil {
		t.Fatal(err)
	}
	want, _ := FileFingerprint(certFile)
	if ci, _ := c.Info(); ci.SelfSigned || ci.Fingerprint != want || ci.Error != "" {
		t.Errorf("served %+v, want the configured certificate %s", ci, want)
	}
	cfg.Web.KeyFile = filepath.Join(dir, "missing.pem")
	if err := c.Ensure(cfg); err == nil {
		t.Error("a missing key_file gave no error")
	}
	if ci, _ := c.Info(); !ci.SelfSigned || !strings.Contains(ci.Error, "cert_file") {
		t.Errorf("with a missing key: served %+v, want the box's own, saying why", ci)
	}
}

// Over plain HTTP only the status and the metrics are served; the page redirects to HTTPS
// (on its port, under the name used), and a login or an action is refused unread.
func TestPlainHTTP(t *testing.T) {
	e := newEnv(t)
	ok := loggedIn(t, e)
	checked := 0
	e.s.auth.verify = func(h, pw string) bool { checked++; return verifyPassword(h, pw) }

	for _, p := range []string{"/api/status", "/metrics", "/api/leds"} {
		if w := e.plain("GET", p, lan, "", nil); w.Code != 200 || w.Header().Get("Strict-Transport-Security") != "" {
			t.Errorf("plain GET %s: %d, HSTS %q; want 200 without HSTS", p, w.Code, w.Header().Get("Strict-Transport-Security"))
		}
	}
	for p, want := range map[string]string{
		"/":                            "https://192.168.1.1/",
		"/static/app.js":               "https://192.168.1.1/static/app.js",
		"/api/session":                 "https://192.168.1.1/api/session",
		"/api/events":                  "https://192.168.1.1/api/events",
		"/api/evidence?addr=192.0.2.9": "https://192.168.1.1/api/evidence?addr=192.0.2.9",
	} {
		w := e.plain("GET", p, lan, "", map[string]string{"Cookie": ok["Cookie"]})
		if w.Code != http.StatusFound || w.Header().Get("Location") != want {
			t.Errorf("plain GET %s: %d to %q, want a redirect to %s", p, w.Code, w.Header().Get("Location"), want)
		}
	}
	b, _ := json.Marshal(map[string]string{"password": "correct horse"})
	if w := e.plain("POST", "/api/login", lan, string(b), nil); w.Code != 403 || len(w.Result().Cookies()) != 0 || checked != 0 {
		t.Errorf("plain login: %d, cookies %v, %d password check(s); want 403, none, none", w.Code, w.Result().Cookies(), checked)
	}
	if w := e.plain("POST", "/api/block", lan, `{"addr":"198.51.100.77"}`, ok); w.Code != 403 || len(e.owner.State().Entries) != 0 {
		t.Errorf("plain action with a session: %d, blocklist %v; want 403, untouched", w.Code, e.owner.State().Entries)
	}
	if w := e.req("GET", "/", lan, "", nil); w.Code != 200 || !strings.HasPrefix(w.Header().Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("HTTPS page: %d, HSTS %q", w.Code, w.Header().Get("Strict-Transport-Security"))
	}

	// Another HTTPS port, an IPv6 address.
	e.s.o.Config().Web.HTTPSPort = 8443
	for host, want := range map[string]string{"192.168.1.1": "https://192.168.1.1:8443/x?y=1", "[fd00:1::1]:80": "https://[fd00:1::1]:8443/x?y=1"} {
		if w := e.plain("GET", "/x?y=1", lan, "", map[string]string{"Host": host}); w.Header().Get("Location") != want {
			t.Errorf("plain GET via %s: to %q, want %s", host, w.Header().Get("Location"), want)
		}
	}
	e.s.o.Config().Web.HTTPSPort = 443
	if w := e.plain("GET", "/", lan, "", map[string]string{"Host": "[fd00:1::1]"}); w.Header().Get("Location") != "https://[fd00:1::1]/" {
		t.Errorf("plain GET via [fd00:1::1]: to %q", w.Header().Get("Location"))
	}
}

// serveTLS serves the page over HTTPS with the box's certificate, as the daemon does.
func serveTLS(t *testing.T, e *env) (url string, certs *Certs) {
	t.Helper()
	certs = NewCerts(e.dir)
	if err := certs.Ensure(e.s.o.Config()); err != nil {
		t.Fatal(err)
	}
	e.s.o.Certs = certs
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: e.s.Handler(), TLSConfig: certs.TLSConfig()}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return "https://" + ln.Addr().String(), certs
}

// A login over HTTPS, by a client that pins the box's certificate by its fingerprint, works
// and gets a Secure cookie and HSTS; the same login over plain HTTP is refused; a client
// pinning another fingerprint never talks to the box.
func TestHTTPSPinnedLogin(t *testing.T) {
	e := newEnv(t)
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	url, _ := serveTLS(t, e)
	fp, err := CertFingerprint(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: PinnedTLS(fp)}}
	body := `{"password":"correct horse"}`
	resp, err := client.Post(url+"/api/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != 200 || len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("login over HTTPS: %d, cookies %+v, HSTS %q", resp.StatusCode, cookies, resp.Header.Get("Strict-Transport-Security"))
	}
	resp, err = client.Get(url + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.TLS == nil || st.TLS.Fingerprint != fp || !st.TLS.SelfSigned {
		t.Errorf("status shows the certificate %+v, want %s", st.TLS, fp)
	}

	wrong := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: PinnedTLS(strings.Repeat("00:", 31) + "00")}}
	if resp, err := wrong.Get(url + "/api/status"); err == nil {
		resp.Body.Close()
		t.Error("a client pinning another certificate got an answer")
	}

	plain := httpServer(t, e)
	resp, err = http.Post(plain+"/api/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || len(resp.Cookies()) != 0 {
		t.Errorf("login over plain HTTP: %d, cookies %v; want 403 and none", resp.StatusCode, resp.Cookies())
	}
}

// httpServer serves the page over plain HTTP.
func httpServer(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: e.s.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// Wrong passwords from one LAN host lock out that host only over IPv4: another on the same
// LAN still logs in. Over IPv6 the lockout holds for the /64 (a host picks any address of
// it at will), so the neighbour in it is locked out too (see lockKey).
func TestLockoutPerLANHost(t *testing.T) {
	e := newEnv(t)
	e.s.o.Config().Web.MaxFailures = 5
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		bad, good string
		want      int
	}{{"fd00:1::a", "fd00:1::b", 429}, {"192.168.1.66", "192.168.1.67", 200}} {
		bad, good, want := c.bad, c.good, c.want
		for i := 1; i <= 5; i++ {
			if w := login(t, e, bad, "wrong password", nil); w.Code != map[bool]int{true: 429, false: 401}[i == 5] {
				t.Errorf("wrong password #%d from %s: %d", i, bad, w.Code)
			}
		}
		if w := login(t, e, bad, "correct horse", nil); w.Code != 429 {
			t.Errorf("right password from the locked-out %s: %d, want 429", bad, w.Code)
		}
		if w := login(t, e, good, "correct horse", nil); w.Code != want {
			t.Errorf("right password from %s, next to the locked-out %s: %d, want %d", good, bad, w.Code, want)
		}
	}
}

// webLoginEvents are the login events published so far, by kind.
func webLoginEvents(e *env) map[string]int {
	out := map[string]int{}
	for _, ev := range e.bus.Recent(1000) {
		if strings.HasPrefix(ev.Kind, "web.login.") {
			out[ev.Kind]++
		}
	}
	return out
}

// A lockout is one event, however many requests it refuses, and refused requests cost no
// password check.
func TestLockoutOneEvent(t *testing.T) {
	e := newEnv(t)
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	checked := 0
	e.s.auth.verify = func(h, pw string) bool { mu.Lock(); checked++; mu.Unlock(); return verifyPassword(h, pw) }
	attacker := "192.168.1.66"
	for i := 0; i < 3; i++ { // max_failures 3
		login(t, e, attacker, "wrong password", nil)
	}
	for i := 0; i < 100; i++ {
		pw := "wrong password"
		if i%2 == 0 {
			pw = "correct horse"
		}
		if w := login(t, e, attacker, pw, nil); w.Code != 429 {
			t.Fatalf("request #%d during the lockout: %d, want 429", i+1, w.Code)
		}
	}
	if got := webLoginEvents(e); got["web.login.locked"] != 1 || got["web.login.failed"] != 1 || len(got) != 2 {
		t.Errorf("events %v, want one lockout and one wrong password", got)
	}
	if checked != 3 {
		t.Errorf("%d password checks, want 3: refused requests are not checked", checked)
	}
}

// A stream of wrong passwords from one address holds at most one password check at a time,
// so the real admin's login from elsewhere is checked at once, while the attacker's waits.
func TestLoginNotHeldByFlood(t *testing.T) {
	e := newEnv(t)
	if err := SetPassword(e.dir, "correct horse"); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}, 100), make(chan struct{})
	var mu sync.Mutex
	inFlight, most := 0, 0
	e.s.auth.verify = func(h, pw string) bool {
		if pw == "wrong password" {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			entered <- struct{}{}
			<-release
			mu.Lock()
			inFlight--
			mu.Unlock()
		}
		return verifyPassword(h, pw)
	}
	const n = 20
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- login(t, e, "192.168.1.66", "wrong password", nil).Code
		}()
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no attacker's password was ever checked")
	}
	admin := make(chan int, 1)
	go func() { admin <- login(t, e, lan, "correct horse", nil).Code }()
	select {
	case code := <-admin:
		if code != 200 {
			t.Errorf("the admin's login during the flood: %d, want 200", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the admin's login waited behind the attacker's")
	}
	close(release)
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if most != 1 || count[401] != 2 || count[429] != n-2 {
		t.Errorf("attacker: at most %d check(s) at once, answers %v; want 1, 2x401 and the rest 429", most, count)
	}
}

// newTLSServer serves the page over HTTPS with httptest's own certificate.
func newTLSServer(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(e.s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// streamFrom opens an event stream from a local address; it returns the answer's code and,
// when the stream opened, whether it delivered a status.
func streamFrom(ctx context.Context, t *testing.T, base *http.Transport, url, from string) (int, bool) {
	t.Helper()
	tr := base.Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/events", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("event stream from %s: %v", from, err)
	}
	context.AfterFunc(ctx, func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		resp.Body.Close()
		return resp.StatusCode, false
	}
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return resp.StatusCode, false
		}
		if strings.HasPrefix(line, "data: {") {
			return resp.StatusCode, true
		}
	}
}

// 100 event streams from one address hold only a few streams: another address still gets
// its status and its stream.
func TestEventStreamsPerClient(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	srv := newTLSServer(t, e)
	defer cancel() // runs before the server's cleanup: the streams end first
	base := srv.Client().Transport.(*http.Transport)
	count := map[int]int{}
	for i := 0; i < 100; i++ {
		code, delivered := streamFrom(ctx, t, base, srv.URL, "127.0.0.1")
		if code == 200 && !delivered {
			t.Fatalf("stream #%d opened but delivered nothing", i+1)
		}
		count[code]++
	}
	if count[200] != maxStreamsPerClient || count[http.StatusTooManyRequests] != 100-maxStreamsPerClient {
		t.Errorf("100 streams from one address: %v, want %d open and the rest 429", count, maxStreamsPerClient)
	}
	other := base.Clone()
	other.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/status", nil)
	resp, err := other.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status from another address: %d", resp.StatusCode)
	}
	if code, delivered := streamFrom(ctx, t, base, srv.URL, "127.0.0.2"); code != 200 || !delivered {
		t.Errorf("stream from another address: %d, delivered %v", code, delivered)
	}
}

// Evidence captures, abuse reports and the audit log need a login, over HTTPS; the status
// stays readable on the LAN without one.
func TestSecretsNeedLogin(t *testing.T) {
	e := newEnv(t)
	ev := filepath.Join(e.dir, "evidence", "x.pcapng")
	os.MkdirAll(filepath.Dir(ev), 0o700)
	os.WriteFile(ev, []byte("PCAPNG sip:+441632960123@pbx ext-alice digest-response"), 0o600)
	p := netip.MustParsePrefix("198.51.100.66/32")
	e.owner.set(func(f *fakeOwner) {
		f.entries[p] = netcfg.Entry{Prefix: p, Claims: []netcfg.Claim{{Source: netcfg.SourceSIPGuard, Reason: "password cracking", Since: e.now}}}
	})
	e.guard = []sipguard.Entry{{Prefix: p, Reason: "password cracking", Detail: "ext-alice", Evidence: ev}}
	sess := loggedIn(t, e)
	delete(sess, "X-CSRF-Token")
	for path, secret := range map[string]string{
		"/api/evidence?addr=198.51.100.66": "+441632960123",
		"/api/abuse?addr=198.51.100.66":    "Abuse report",
		"/api/audit.csv":                   "login",
	} {
		if w := e.req("GET", path, lan, "", nil); w.Code != 401 || strings.Contains(w.Body.String(), secret) {
			t.Errorf("%s without a login: %d, want 401 and nothing of it", path, w.Code)
		}
		if w := e.plain("GET", path, lan, "", sess); w.Code != http.StatusFound || strings.Contains(w.Body.String(), secret) {
			t.Errorf("%s over plain HTTP with a session: %d, want a redirect and nothing of it", path, w.Code)
		}
		if w := e.req("GET", path, lan, "", sess); w.Code != 200 || !strings.Contains(w.Body.String(), secret) {
			t.Errorf("%s logged in: %d %q", path, w.Code, w.Body)
		}
	}
	for _, get := range []func(string, string, string, string, map[string]string) *httptest.ResponseRecorder{e.req, e.plain} {
		if w := get("GET", "/api/status", lan, "", nil); w.Code != 200 || strings.Contains(w.Body.String(), "+441632960123") {
			t.Errorf("status on the LAN: %d", w.Code)
		}
	}
}
