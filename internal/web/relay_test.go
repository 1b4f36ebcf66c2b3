package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/relay/box"
)

// The relay card's API is behind login; /metrics says where voice goes (direct while the
// tunnel is not up) and /api/relay the address the trunk provider must allow.
func TestRelayCard(t *testing.T) {
	e := newEnv(t)
	src := strings.Replace(string(config.Example()), "# endpoint = \"relay.example.net:51830\"", "endpoint = \"203.0.113.40:51830\"", 1)
	src = strings.Replace(src, "# public_key = \"base64 from `appliance relay status` on the relay\"", "public_key = \"uEYQ0OdzrY4ogSEsn2UdpFrlUcnNiWpZZyk1RnOrBUM=\"", 1)
	cfg, err := config.Parse("example.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	p, err := box.New(box.Options{Config: cfg, StateDir: e.dir})
	if err != nil {
		t.Fatal(err)
	}
	e.s.o.Relay = func() (Relay, bool) { return p, true }
	e.s.o.Config = func() *config.Config { return cfg }
	if w := e.req("GET", "/api/relay", lan, "", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("/api/relay without a login: %d, want 401", w.Code)
	}
	w := e.req("GET", "/api/relay", lan, "", loggedIn(t, e))
	if body := w.Body.String(); w.Code != 200 || !strings.Contains(body, `"public_address": "203.0.113.40"`) || !strings.Contains(body, `"using": "direct"`) ||
		!strings.Contains(body, p.PublicKey().String()) {
		t.Errorf("/api/relay: %d %s", w.Code, body)
	}
	sess := loggedIn(t, e)
	if w := e.req("GET", "/dr-sheet.txt", lan, "", sess); !strings.Contains(w.Body.String(), "the trunk provider must allow 203.0.113.40") {
		t.Errorf("the DR sheet does not say which address the trunk provider must allow: %d\n%s", w.Code, w.Body)
	}
	m := e.req("GET", "/metrics", lan, "", nil).Body.String()
	for _, want := range []string{`appliance_relay_using{path="direct"} 1`, `appliance_relay_using{path="relay"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
