package vpn_test

import (
	"bytes"
	"errors"
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

// A removed peer's key file is deleted (at the reload, or at the next start when it was
// removed while the box was off) and audited; the same name added again gets a new pair.
// A peer that brings its own key cannot be rotated by the box.
func TestRemovedPeerKeyDeleted(t *testing.T) {
	phone, _ := wgtypes.GeneratePrivateKey()
	bob := "\n[vpn.peers.bob]\naddress = \"10.99.0.3\"\npublic_key = \"" + phone.PublicKey().String() + "\"\n"
	// An interface name of its own: a reload reconfigures the interface named, were it there.
	iface := ifName("k")
	parse := func(text string) *config.Config {
		t.Helper()
		c, err := config.Parse("site.toml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	with := parse(siteConfig(iface, bob))
	without := parse(strings.Replace(siteConfig(iface, bob), "[vpn.peers.alice]\naddress = \"10.99.0.2\"\n", "", 1))
	if _, ok := without.VPN.Peers["alice"]; ok {
		t.Fatal("alice still in the config without her")
	}
	dir := t.TempDir()
	var revoked []string
	s, err := vpn.New(vpn.Options{Config: with, StateDir: dir, Revoked: func(n, pub string) { revoked = append(revoked, n+" "+pub) }})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "vpn", "peer-alice.key")
	first := publicKeyOf(t, s, "alice")
	if err := s.Reload(without); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Errorf("alice's key file after her removal: %v", err)
	}
	if len(revoked) != 1 || revoked[0] != "alice "+first {
		t.Errorf("revocations told: %q, want alice's with %s", revoked, first)
	}
	if err := s.Reload(with); err != nil {
		t.Fatal(err)
	}
	second := publicKeyOf(t, s, "alice")
	if second == first {
		t.Error("alice got her old key back when added again")
	}

	// Removed while the box was off: gone at the next start.
	revoked = nil
	if _, err := vpn.New(vpn.Options{Config: without, StateDir: dir, Revoked: func(n, pub string) { revoked = append(revoked, n+" "+pub) }}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) || len(revoked) != 1 || revoked[0] != "alice "+second {
		t.Errorf("alice's key file after a start without her: %v; revocations told %q", err, revoked)
	}

	if _, err := s.Rotate("bob"); !errors.Is(err, vpn.ErrOwnKey) || !strings.Contains(err.Error(), "public_key") {
		t.Errorf("rotating bob, who brings his own key: %v", err)
	}
	if _, err := s.Rotate("mallory"); err != vpn.ErrNoPeer {
		t.Errorf("rotating an unknown peer: %v", err)
	}
}

func publicKeyOf(t *testing.T, s *vpn.Service, name string) string {
	t.Helper()
	for _, p := range s.Status().Peers {
		if p.Name == name {
			return p.PublicKey
		}
	}
	t.Fatalf("no peer %s in %+v", name, s.Status())
	return ""
}
