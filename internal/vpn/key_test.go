package vpn_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/vpn"
)

// The box makes its key once and keeps it (0600): the phones' configs stay valid across
// restarts. A peer without public_key gets a key pair the box keeps too; a peer with one
// gets a config that says where its own private key goes. No private key reaches the log.
func TestKeysMadeOnceAndKept(t *testing.T) {
	phone, _ := wgtypes.GeneratePrivateKey()
	cfg, err := config.Parse("site.toml", []byte(siteConfig("wg0", "\n[vpn.peers.bob]\naddress = \"10.99.0.3\"\npublic_key = \""+phone.PublicKey().String()+"\"\n")))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var log bytes.Buffer
	open := func() *vpn.Service {
		s, err := vpn.New(vpn.Options{Config: cfg, StateDir: dir, Log: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open(), open()
	if a.PublicKey() != b.PublicKey() {
		t.Fatal("the box made a new key on the second start")
	}
	for _, f := range []string{"box.key", "peer-alice.key"} {
		st, err := os.Stat(filepath.Join(dir, "vpn", f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, st, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "vpn", "peer-bob.key")); err == nil {
		t.Error("the box made a key for bob, who brings his own")
	}
	alice1, _ := a.ClientConfig("alice")
	alice2, _ := b.ClientConfig("alice")
	if alice1 != alice2 || !strings.Contains(alice1, "PrivateKey = ") {
		t.Errorf("alice's config changed between starts or is incomplete:\n%s\n%s", alice1, alice2)
	}
	bob, err := a.ClientConfig("bob")
	if err != nil || strings.Contains(bob, "\nPrivateKey") || !strings.Contains(bob, "# PrivateKey: this phone's own key, whose public key is "+phone.PublicKey().String()) {
		t.Errorf("bob's config: %v\n%s", err, bob)
	}
	if !strings.Contains(bob, "AllowedIPs = 10.99.0.0/24, 192.168.50.0/24") || !strings.Contains(bob, "PersistentKeepalive = 5") {
		t.Errorf("bob's config routes or keepalive:\n%s", bob)
	}
	if _, err := a.ClientConfig("mallory"); err != vpn.ErrNoPeer {
		t.Errorf("unknown peer: %v", err)
	}
	box, _ := os.ReadFile(filepath.Join(dir, "vpn", "box.key"))
	aliceKey := strings.SplitN(alice1, "PrivateKey = ", 2)[1][:44]
	if k := strings.TrimSpace(string(box)); strings.Contains(log.String(), k) || strings.Contains(log.String(), aliceKey) {
		t.Error("a private key is in the log")
	}
}
