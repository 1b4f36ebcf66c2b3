package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/vpn"
)

// The VPN card's API: peers' configs and QR codes hold private keys, so only a logged-in
// admin over HTTPS gets them, and each download is audited.
func TestVPNPeerConfigNeedsLogin(t *testing.T) {
	e := newEnv(t)
	v := withVPN(t, e, strings.Replace(string(config.Example()), "[vpn]\nenabled = false", "[vpn]\nenabled = true", 1))
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

// The VPN card's "Rotate key" button: an action like the others (login, CSRF token, HTTPS),
// it gives the peer a new key pair, answers with the new config (the old private key gone
// from it), is audited, and refuses a peer that brings its own key with what to do instead.
func TestVPNRotateFromPage(t *testing.T) {
	e := newEnv(t)
	phone, _ := wgtypes.GeneratePrivateKey()
	// An interface of its own: a rotation reconfigures the interface named, were it there.
	text := strings.Replace(string(config.Example()), "[vpn]\nenabled = false", fmt.Sprintf("[vpn]\nenabled = true\ninterface = \"wtr%d\"", os.Getpid()%100000), 1) +
		"\n[vpn.peers.bob]\naddress = \"10.99.0.3\"\npublic_key = \"" + phone.PublicKey().String() + "\"\n"
	v := withVPN(t, e, text)
	before, err := v.ClientConfig("alice_mobile")
	if err != nil {
		t.Fatal(err)
	}
	rotate := "/api/vpn/peer/alice_mobile/rotate"
	if w := e.req("POST", rotate, lan, "{}", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("rotate without a login: %d, want 401", w.Code)
	}
	sess := loggedIn(t, e)
	noCSRF := map[string]string{"Cookie": sess["Cookie"], "Origin": sess["Origin"]}
	if w := e.req("POST", rotate, lan, "{}", noCSRF); w.Code != http.StatusForbidden {
		t.Errorf("rotate without the CSRF token: %d, want 403", w.Code)
	}
	if w := e.plain("POST", rotate, lan, "{}", sess); w.Code != http.StatusForbidden {
		t.Errorf("rotate over plain HTTP: %d, want 403", w.Code)
	}
	if now, _ := v.ClientConfig("alice_mobile"); now != before {
		t.Fatal("a refused rotation changed alice's key")
	}
	w := e.req("POST", rotate, lan, "{}", sess)
	var got struct {
		Peer      string
		PublicKey string `json:"public_key"`
		Config    string
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != 200 || err != nil {
		t.Fatalf("rotate: %d %s", w.Code, w.Body)
	}
	oldKey := strings.SplitN(before, "PrivateKey = ", 2)[1][:44]
	after, _ := v.ClientConfig("alice_mobile")
	if got.Config != after || !strings.Contains(after, "PrivateKey = ") || strings.Contains(after, oldKey) || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("the answer is not the new config, or it still holds the old key:\n%s", got.Config)
	}
	st := v.Status()
	if i := slices.IndexFunc(st.Peers, func(p vpn.PeerStatus) bool { return p.Name == "alice_mobile" }); i < 0 || st.Peers[i].PublicKey != got.PublicKey {
		t.Errorf("the VPN card shows %+v, want alice_mobile with %s", st.Peers, got.PublicKey)
	}
	w = e.req("POST", "/api/vpn/peer/bob/rotate", lan, "{}", sess)
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "public_key") {
		t.Errorf("rotate of a peer with its own key: %d %s, want 409 naming public_key", w.Code, w.Body)
	}
	if w := e.req("POST", "/api/vpn/peer/mallory/rotate", lan, "{}", sess); w.Code != 404 {
		t.Errorf("rotate of an unknown peer: %d, want 404", w.Code)
	}
	es, _ := e.audit.Entries()
	var rotations []string
	for _, en := range es {
		if en.What == "vpn.rotate" {
			rotations = append(rotations, en.Before+" -> "+en.After)
		}
	}
	if len(rotations) != 1 || !strings.HasSuffix(rotations[0], "alice_mobile "+got.PublicKey) {
		t.Errorf("audited rotations %q, want alice_mobile's to %s", rotations, got.PublicKey)
	}
}

// withVPN gives e's page a VPN part made from the config text.
func withVPN(t *testing.T, e *env, text string) *vpn.Service {
	t.Helper()
	cfg, err := config.Parse("example.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vpn.New(vpn.Options{Config: cfg, StateDir: e.dir})
	if err != nil {
		t.Fatal(err)
	}
	e.s.o.VPN = func() (VPN, bool) { return v, true }
	return v
}
