package vpn

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/store"
)

// ErrOwnKey means the peer brings its own key pair (public_key in the config): the box never
// had its private key, so it cannot make a new one for it.
var ErrOwnKey = errors.New("the phone holds its own private key: make a new key pair on the phone and put its public key in the config's public_key")

// readKey reads a private key file.
func readKey(path string) (wgtypes.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return wgtypes.Key{}, err
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("vpn: %s holds no WireGuard key: %w", path, err)
	}
	return k, nil
}

// newKey makes a private key and saves it at path (0600, crash-safe: a half-written key
// would lock the phone out), replacing any key there.
func newKey(path string) (wgtypes.Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("vpn: make key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return wgtypes.Key{}, fmt.Errorf("vpn: %w", err)
	}
	if err := store.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return wgtypes.Key{}, fmt.Errorf("vpn: save key: %w", err)
	}
	return k, nil
}

// LoadKey reads a private key saved by an earlier start, or makes and saves one (0600,
// crash-safe); the relay part keeps its key the same way.
func LoadKey(path string) (wgtypes.Key, error) { return loadKey(path) }

// loadKey reads a private key saved by an earlier start, or makes and saves one.
func loadKey(path string) (wgtypes.Key, error) {
	k, err := readKey(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return wgtypes.Key{}, fmt.Errorf("vpn: read key: %w", err)
	}
	return newKey(path)
}

// peerKey is a peer's public key, and its private key when the box made the pair.
type peerKey struct {
	public  wgtypes.Key
	private *wgtypes.Key
}

func (s *Service) peerPath(name string) string { return filepath.Join(s.dir, "peer-"+name+".key") }

// checkKeys checks the public keys c gives, without touching the box's key files.
func checkKeys(c *config.Config) error {
	for _, n := range c.VPN.PeerNames() {
		if p := c.VPN.Peers[n]; p.PublicKey != "" {
			if _, err := wgtypes.ParseKey(p.PublicKey); err != nil {
				return fmt.Errorf("vpn: peer %s: %w", n, err)
			}
		}
	}
	return nil
}

// keysNow is the config in force and its peers' keys: the public key a peer gave, or a
// pair the box made for it and keeps in StateDir/vpn/peer-NAME.key (made here the first
// time). Both are read under keyMu, so a key is never made for a peer a reload removed.
func (s *Service) keysNow() (*config.Config, map[string]peerKey, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	c := s.config()
	out := map[string]peerKey{}
	for _, n := range c.VPN.PeerNames() {
		p := c.VPN.Peers[n]
		if p.PublicKey != "" {
			k, err := wgtypes.ParseKey(p.PublicKey)
			if err != nil {
				return c, nil, fmt.Errorf("vpn: peer %s: %w", n, err)
			}
			out[n] = peerKey{public: k}
			continue
		}
		k, err := loadKey(s.peerPath(n))
		if err != nil {
			return c, nil, fmt.Errorf("vpn: peer %s: %w", n, err)
		}
		out[n] = peerKey{public: k.PublicKey(), private: &k}
	}
	return c, out, nil
}

// setConfig puts c in force and deletes the key files of the peers it no longer gives the
// box to hold (removed, or now bringing their own public_key): a revoked key must never
// come back, not even for a new peer of the same name. A file that cannot be deleted is an
// error, and is tried again at the next reload or start.
func (s *Service) setConfig(c *config.Config) error {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	s.mu.Lock()
	s.cfg = c
	s.mu.Unlock()
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("vpn: list keys: %w", err)
	}
	var errs []error
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "peer-")
		n, ok2 := strings.CutSuffix(n, ".key")
		if !ok || !ok2 || !e.Type().IsRegular() {
			continue
		}
		if p := c.VPN.Peers[n]; p != nil && p.PublicKey == "" {
			continue
		}
		var pub string
		if k, err := readKey(s.peerPath(n)); err == nil {
			pub = k.PublicKey().String()
		}
		if err := store.Remove(s.peerPath(n)); err != nil {
			errs = append(errs, fmt.Errorf("vpn: revoke peer %s: %w", n, err))
			continue
		}
		s.log.Info("vpn: peer revoked: its key is deleted", "peer", n, "public_key", pub)
		if s.revoked != nil {
			s.revoked(n, pub)
		}
	}
	return errors.Join(errs...)
}

// Rotation is a peer's public key before and after Rotate.
type Rotation struct {
	Peer     string
	Old, New wgtypes.Key
}

// Changed says whether the peer got a new key (even if Rotate failed after that).
func (r Rotation) Changed() bool { return r.New != wgtypes.Key{} }

// Audit is the rotation for the audit log: the peer's name with its old and new public keys.
func (r Rotation) Audit() (before, after string) {
	before = r.Peer + " (no key yet)"
	if r.Old != (wgtypes.Key{}) {
		before = r.Peer + " " + r.Old.String()
	}
	return before, r.Peer + " " + r.New.String()
}

// Rotate gives peer name a new key pair: the new private key replaces the old one on the box,
// and the interface drops the old public key at once (its session ends, a phone holding
// the old config is no longer let in). Its config and QR code then carry the new key. The
// CLI and the page both call it.
func (s *Service) Rotate(name string) (Rotation, error) {
	r := Rotation{Peer: name}
	s.keyMu.Lock()
	c := s.config()
	p, ok := c.VPN.Peers[name]
	switch {
	case !ok || !c.VPN.Enabled:
		s.keyMu.Unlock()
		return r, ErrNoPeer
	case p.PublicKey != "":
		s.keyMu.Unlock()
		return r, fmt.Errorf("vpn: peer %s: %w ([vpn.peers.%s] public_key)", name, ErrOwnKey, name)
	}
	if k, err := readKey(s.peerPath(name)); err == nil {
		r.Old = k.PublicKey()
	}
	k, err := newKey(s.peerPath(name))
	s.keyMu.Unlock()
	if err != nil {
		return r, fmt.Errorf("vpn: rotate peer %s: %w", name, err)
	}
	r.New = k.PublicKey()
	s.log.Info("vpn: peer's key rotated", "peer", name, "old_public_key", r.Old.String(), "public_key", r.New.String())
	if err := s.applyNow(); err != nil {
		return r, fmt.Errorf("vpn: peer %s has a new key, but the interface still has the old one: %w", name, err)
	}
	return r, nil
}
