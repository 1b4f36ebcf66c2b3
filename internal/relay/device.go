package relay

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/relay/wire"
	"github.com/officeedge/appliance/internal/vpn"
)

// tunnel is the relay's WireGuard: wireguard-go on the TUN device voice0 with the relay's
// bind (package wire: probes, paths, duplication), always in-process as on the box. Each
// office is one peer whose only allowed source is its box's tunnel address.
type tunnel struct {
	dev  *device.Device
	bind *wire.RelayBind
}

// openTunnel makes voice0 with every office's relay address on it and turns on forwarding.
func openTunnel(c *Config, key wgtypes.Key, log *slog.Logger) (*tunnel, error) {
	if l, err := netlink.LinkByName(TunnelInterface); err == nil {
		// Left by a relay that died; anything else of that name is not ours to remove.
		if l.Type() != "tuntap" {
			return nil, fmt.Errorf("relay: interface %s exists and is a %s, not the relay's TUN device", TunnelInterface, l.Type())
		}
		if err := netlink.LinkDel(l); err != nil {
			return nil, fmt.Errorf("relay: remove stale %s: %w", TunnelInterface, err)
		}
	}
	listen := netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(c.ListenPort))
	if c.PublicAddress.IsValid() {
		// Answers leave from the address the boxes dial, on a host with several.
		listen = netip.AddrPortFrom(c.PublicAddress.Addr, uint16(c.ListenPort))
	}
	bind, err := wire.NewRelayBind(wire.RelayOptions{Listen: listen, Private: key, Log: log})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	offices := map[wgtypes.Key]wire.Office{}
	for _, n := range c.Names() {
		offices[c.Office[n].Key] = wire.Office{Name: n}
	}
	if err := bind.SetOffices(offices); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	td, err := tun.CreateTUN(TunnelInterface, vpn.MTU)
	if err != nil {
		return nil, fmt.Errorf("relay: TUN device %s: %w", TunnelInterface, err)
	}
	lg := &device.Logger{Verbosef: device.DiscardLogf, Errorf: func(f string, a ...any) {
		msg := "relay: wireguard: " + fmt.Sprintf(f, a...)
		if strings.Contains(msg, "no known endpoint") {
			// Voice for a box that has not dialled in yet: the relay never dials a box, and
			// the status says which boxes are connected.
			log.Debug(msg)
			return
		}
		log.Warn(msg)
	}}
	t := &tunnel{dev: device.NewDevice(td, bind, lg), bind: bind}
	if err := t.dev.IpcSet(uapiConfig(c, key)); err != nil {
		t.close()
		return nil, fmt.Errorf("relay: configure WireGuard: %w", err)
	}
	if err := t.dev.Up(); err != nil {
		t.close()
		return nil, fmt.Errorf("relay: WireGuard up: %w", err)
	}
	if err := linkUp(c); err != nil {
		t.close()
		return nil, err
	}
	// The offices' voice is forwarded between voice0 and the public side; the owner writes
	// this sysctl only on a box (OwnerOptions.Links).
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.close()
		return nil, fmt.Errorf("relay: enable forwarding: %w", err)
	}
	return t, nil
}

// uapiConfig is the device's whole configuration in WireGuard's UAPI form.
func uapiConfig(c *Config, key wgtypes.Key) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\nreplace_peers=true\n", hex.EncodeToString(key[:]), c.ListenPort)
	for _, n := range c.Names() {
		o := c.Office[n]
		fmt.Fprintf(&b, "public_key=%s\nreplace_allowed_ips=true\nallowed_ip=%s/32\n", hex.EncodeToString(o.Key[:]), o.Box())
	}
	return b.String()
}

// linkUp gives voice0 its MTU, each office's relay address and sets it up.
func linkUp(c *Config) error {
	l, err := netlink.LinkByName(TunnelInterface)
	if err != nil {
		return fmt.Errorf("relay: %s: %w", TunnelInterface, err)
	}
	if err := netlink.LinkSetMTU(l, vpn.MTU); err != nil {
		return fmt.Errorf("relay: %s: set MTU: %w", TunnelInterface, err)
	}
	for _, n := range c.Names() {
		o := c.Office[n]
		a := &netlink.Addr{IPNet: &net.IPNet{IP: o.Relay().AsSlice(), Mask: net.CIDRMask(o.Tunnel.Bits(), 32)}}
		if err := netlink.AddrReplace(l, a); err != nil {
			return fmt.Errorf("relay: %s: address %s: %w", TunnelInterface, o.Relay(), err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("relay: %s: set up: %w", TunnelInterface, err)
	}
	return nil
}

// close ends the device, which takes voice0 with it.
func (t *tunnel) close() {
	t.dev.Close()
}

// peerStatus is what WireGuard says of one office's peer.
type peerStatus struct {
	Endpoint      string    `json:"endpoint,omitempty"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
}

// peers reads the device's peers by public key.
func (t *tunnel) peers() (map[wgtypes.Key]peerStatus, error) {
	s, err := t.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("relay: read WireGuard: %w", err)
	}
	out := map[wgtypes.Key]peerStatus{}
	var cur *wgtypes.Key
	var st peerStatus
	flush := func() {
		if cur != nil {
			out[*cur] = st
		}
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush()
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != wgtypes.KeyLen {
				return nil, errors.New("relay: read WireGuard: a malformed peer key")
			}
			key := wgtypes.Key(b)
			cur, st = &key, peerStatus{}
		case "endpoint":
			st.Endpoint = v
		case "last_handshake_time_sec":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				st.LastHandshake = time.Unix(n, 0)
			}
		case "rx_bytes":
			st.RxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			st.TxBytes, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	flush()
	return out, nil
}
