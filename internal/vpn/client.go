package vpn

import (
	"errors"
	"fmt"
	"strings"

	"github.com/skip2/go-qrcode"

	"github.com/officeedge/appliance/internal/config"
)

// ErrNoPeer means no peer of that name is configured.
var ErrNoPeer = errors.New("vpn: no such peer")

// ClientConfig is the wg-quick config file of peer name, the one its WireGuard app imports
// (from the file or the QR code). When the peer gave its own public key the box cannot know
// its private key: the file says so where the key goes, and the user adds it on the phone.
func (s *Service) ClientConfig(name string) (string, error) {
	c, keys, err := s.keysNow()
	if err != nil {
		return "", err
	}
	p, ok := c.VPN.Peers[name]
	if !ok || !c.VPN.Enabled {
		return "", ErrNoPeer
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# WireGuard for %s at %s (made by the appliance)\n[Interface]\n", name, c.Site)
	if k := keys[name].private; k != nil {
		fmt.Fprintf(&b, "PrivateKey = %s\n", k)
	} else {
		fmt.Fprintf(&b, "# PrivateKey: this phone's own key, whose public key is %s\n", keys[name].public)
	}
	fmt.Fprintf(&b, "Address = %s/32\n", p.Address)
	if len(c.VPN.DNS) > 0 {
		var ds []string
		for _, d := range c.VPN.DNS {
			ds = append(ds, d.String())
		}
		fmt.Fprintf(&b, "DNS = %s\n", strings.Join(ds, ", "))
	}
	fmt.Fprintf(&b, "\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\n", s.key.PublicKey(), c.VPN.EndpointHostPort(), strings.Join(allowedIPs(c), ", "))
	if ka := c.VPN.Keepalive; ka > 0 {
		fmt.Fprintf(&b, "PersistentKeepalive = %d\n", int(ka.Seconds()))
	}
	return b.String(), nil
}

// allowedIPs are what the phone sends into the tunnel: the tunnel's network and the office
// LAN's IPv4 networks (the box's firewall decides what of it the phone reaches); nothing
// else, so the phone's other traffic goes its own way.
func allowedIPs(c *config.Config) []string {
	out := []string{c.VPN.Address.Masked().String()}
	for _, p := range c.LAN.Subnets() {
		if p.Addr().Is4() {
			out = append(out, p.Masked().String())
		}
	}
	return out
}

// QR is peer name's config file as a QR code (PNG), for the WireGuard apps' "scan from QR".
func (s *Service) QR(name string, size int) ([]byte, error) {
	text, err := s.ClientConfig(name)
	if err != nil {
		return nil, err
	}
	png, err := qrcode.Encode(text, qrcode.Medium, size)
	if err != nil {
		return nil, fmt.Errorf("vpn: QR code: %w", err)
	}
	return png, nil
}
