package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/vpn"
)

// The VPN card's API: peers' configs and QR codes hold private keys, so only a logged-in
// admin over HTTPS gets them, and each download is audited.
func TestVPNPeerConfigNeedsLogin(t *testing.T) {
	e := newEnv(t)
	cfg, err := config.Parse("example.toml", []byte(strings.Replace(string(config.Example()), "[vpn]\nenabled = false", "[vpn]\nenabled = true", 1)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vpn.New(vpn.Options{Config: cfg, StateDir: e.dir})
	if err != nil {
		t.Fatal(err)
	}
	e.s.o.VPN = func() (VPN, bool) { return v, true }
	conf, qr := "/api/vpn/peer/alice_mobile.conf", "/api/vpn/peer/alice_mobile/qr.png"
	for _, path := range []string{"/api/vpn", conf, qr} {
		if w := e.req("GET", path, lan, "", nil); w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "PrivateKey") {
			t.Errorf("%s without a login: %d, want 401", path, w.Code)
		}
	}
	sess := loggedIn(t, e)
	if w := e.plain("GET", conf, lan, "", sess); w.Code != http.StatusFound || strings.Contains(w.Body.String(), "PrivateKey") {
		t.Errorf("%s over plain HTTP: %d, want a redirect and no key", conf, w.Code)
	}
	w := e.req("GET", conf, lan, "", sess)
	if body := w.Body.String(); w.Code != 200 || !strings.Contains(body, "PrivateKey = ") || !strings.Contains(body, "Endpoint = office.example.net:51820") ||
		!strings.Contains(body, "Address = 10.99.0.2/32") || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("config: %d %v\n%s", w.Code, w.Header(), body)
	}
	if w := e.req("GET", qr, lan, "", sess); w.Code != 200 || w.Header().Get("Content-Type") != "image/png" || !strings.HasPrefix(w.Body.String(), "\x89PNG") {
		t.Errorf("QR code: %d %v", w.Code, w.Header())
	}
	if w := e.req("GET", "/api/vpn/peer/mallory.conf", lan, "", sess); w.Code != 404 {
		t.Errorf("unknown peer: %d, want 404", w.Code)
	}
	if w := e.req("GET", "/api/vpn", lan, "", sess); w.Code != 200 || !strings.Contains(w.Body.String(), `"name": "alice_mobile"`) ||
		!strings.Contains(w.Body.String(), v.PublicKey().String()) {
		t.Errorf("/api/vpn: %d %s", w.Code, w.Body)
	}
	es, err := e.audit.Entries()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, en := range es {
		if en.What == "vpn.config" || en.What == "vpn.qr" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d VPN downloads audited, want 2", n)
	}
	m := e.req("GET", "/metrics", lan, "", nil).Body.String()
	for _, want := range []string{`appliance_vpn_peer_received_bytes_total{peer="alice_mobile"} 0`, `appliance_vpn_up{implementation="none"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
