package box

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/relay/wire"
)

// MTU of the tunnel: WireGuard's usual, which fits its 80-byte overhead in a 1500 link.
const MTU = 1420

// keepalive is the tunnel's persistent keepalive (seconds): it keeps the lines' NATs open
// so the relay can send the trunk's calls in, and one is sent at once on every line move so
// the relay's WireGuard follows the tunnel to the new line before any voice does.
const keepalive = 5

var errGone = errors.New("relay: the tunnel interface is gone")

// up makes the TUN interface and runs wireguard-go on it with the line-aware bind.
func (p *Part) up() error {
	c := p.config()
	name := c.Relay.Interface
	if l, err := netlink.LinkByName(name); err == nil {
		// Left by a run that died, or someone else's.
		if l.Type() != "tuntap" {
			return fmt.Errorf("relay: interface %s exists and is a %s, not a TUN device", name, l.Type())
		}
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("relay: remove stale %s: %w", name, err)
		}
	}
	var lines []wire.Line
	for _, u := range c.Uplink.All() {
		lines = append(lines, wire.Line{Name: u.Name, Interface: u.Interface})
	}
	b, err := wire.NewBoxBind(wire.BoxOptions{Lines: lines, Private: p.key, RelayPublic: p.relay,
		Relay: p.endpoint, ProbeEvery: c.Relay.ProbeInterval, RelayRestarted: p.relayRestarted, Log: p.log})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	b.SetDuplicate(c.Relay.Duplicate)
	td, err := tun.CreateTUN(name, MTU)
	if err != nil {
		return fmt.Errorf("relay: TUN device %s: %w", name, err)
	}
	lg := &device.Logger{Verbosef: device.DiscardLogf, Errorf: func(f string, a ...any) { p.log.Warn("relay: " + fmt.Sprintf(f, a...)) }}
	dev := device.NewDevice(td, b, lg)
	p.mu.Lock()
	p.bind, p.dev, p.line = b, dev, -1
	p.mu.Unlock()
	if err := p.configure(); err != nil {
		p.down()
		return err
	}
	if err := dev.Up(); err != nil {
		p.down()
		return fmt.Errorf("relay: device up: %w", err)
	}
	if err := linkUp(c.Relay); err != nil {
		p.down()
		return err
	}
	p.log.Info("relay: tunnel up", "interface", name, "address", c.Relay.BoxAddr(), "relay", c.Relay.Endpoint,
		"public_key", p.key.PublicKey().String(), "duplicate", c.Relay.Duplicate)
	return nil
}

// configure gives the device the box's key and the relay as its one peer. AllowedIPs is
// everything: the trunks' packets come out of the tunnel with their own source addresses.
func (p *Part) configure() error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "private_key=%s\nreplace_peers=true\npublic_key=%s\n", hex.EncodeToString(p.key[:]), hex.EncodeToString(p.relay[:]))
	if ep := p.endpoint(); ep.IsValid() {
		fmt.Fprintf(&sb, "endpoint=%s\n", ep)
	}
	fmt.Fprintf(&sb, "persistent_keepalive_interval=%d\nreplace_allowed_ips=true\nallowed_ip=0.0.0.0/0\n", keepalive)
	p.mu.Lock()
	dev := p.dev
	p.mu.Unlock()
	if dev == nil {
		return errors.New("relay: configure the tunnel: it is not up")
	}
	if err := dev.IpcSet(sb.String()); err != nil {
		return fmt.Errorf("relay: configure the tunnel: %w", err)
	}
	return nil
}

// relayRestarted makes the tunnel handshake at once with a relay that restarted. The relay
// lost its session and the box's endpoint, so it can't start one, and the box's WireGuard
// would keep sending with the dead session until its own rekey timeout: 10-15 s of a call's
// media lost. configure re-adds the peer (replace_peers, the same endpoint, allowed IPs and
// keepalive), which drops the session; wireguard-go sends a keepalive at once for a new peer
// with a persistent keepalive, and with no session that keepalive starts the handshake (what
// kick does after a line move, so no kick here). The peer's byte counters restart with it.
func (p *Part) relayRestarted() {
	p.mu.Lock()
	p.relayRestarts++
	n := p.relayRestarts
	p.mu.Unlock()
	p.log.Info("relay: the relay restarted: new handshake", "relay", p.endpoint(), "restarts", n)
	if err := p.configure(); err != nil {
		p.log.Error("relay: handshake with the restarted relay", "err", err)
	}
}

// setPeerEndpoint gives the device the relay's (new) address.
func (p *Part) setPeerEndpoint() {
	p.mu.Lock()
	dev := p.dev
	p.mu.Unlock()
	ep := p.endpoint()
	if dev == nil || !ep.IsValid() {
		return
	}
	if err := dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\nendpoint=%s\n", hex.EncodeToString(p.relay[:]), ep)); err != nil {
		p.log.Error("relay: set the relay's endpoint", "err", err)
	}
}

// kick sends a keepalive now (wireguard-go sends one when the persistent keepalive is
// switched on), so the relay's WireGuard roams to the line the tunnel just moved to.
func (p *Part) kick() {
	p.mu.Lock()
	dev := p.dev
	p.mu.Unlock()
	if dev == nil {
		return
	}
	k := hex.EncodeToString(p.relay[:])
	for _, s := range []int{0, keepalive} {
		if err := dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\npersistent_keepalive_interval=%d\n", k, s)); err != nil {
			p.log.Warn("relay: keepalive after a line move", "err", err)
			return
		}
	}
}

// down removes the routes and the interface: voice goes direct.
func (p *Part) down() {
	c := p.config()
	if err := p.setRoutes(false); err != nil {
		p.log.Error("relay: remove the voice routes", "err", err)
	}
	p.mu.Lock()
	dev, was := p.dev, p.using
	p.dev, p.bind, p.using = nil, nil, UsingDirect
	p.mu.Unlock()
	if was == UsingRelay {
		if _, err := flushVoice(c); err != nil {
			p.log.Error("relay: flush the voice flows", "err", err)
		}
	}
	if dev != nil {
		dev.Close() // closes the TUN device (which takes its link with it) and the bind
	}
	if p.o.Owner != nil {
		_ = p.o.Owner.SetProtected("relay", nil)
	}
	if p.o.Alerts != nil {
		p.o.Alerts.Clear(AlertKey)
	}
}

// linkUp gives the interface its MTU, the box's tunnel address and loose reverse-path
// filtering (the trunks' packets come out of it with sources the main table routes out of
// the lines), and sets it up, where it is not already.
func linkUp(r config.Relay) error {
	l, err := netlink.LinkByName(r.Interface)
	if err != nil {
		return fmt.Errorf("%w: %v", errGone, err)
	}
	if l.Attrs().MTU != MTU {
		if err := netlink.LinkSetMTU(l, MTU); err != nil {
			return fmt.Errorf("relay: %s: set MTU: %w", r.Interface, err)
		}
	}
	a := r.BoxAddr()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(r.Tunnel.Bits(), 32)}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("relay: %s: set address: %w", r.Interface, err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+r.Interface+"/rp_filter", []byte("2"), 0o644); err != nil {
		return fmt.Errorf("relay: %s: rp_filter: %w", r.Interface, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("relay: %s: set up: %w", r.Interface, err)
		}
	}
	return nil
}

// reconcile brings the link and the voice routes back to what the part wants.
func (p *Part) reconcile() error {
	if err := linkUp(p.config().Relay); err != nil {
		return err
	}
	return p.setRoutes(p.Using() == UsingRelay)
}

// peer is the relay as the device has it now.
type peer struct {
	handshake time.Time
	rx, tx    int64
	endpoint  string
}

func (p *Part) readPeer() peer {
	p.mu.Lock()
	dev := p.dev
	p.mu.Unlock()
	var out peer
	if dev == nil {
		return out
	}
	s, err := dev.IpcGet()
	if err != nil {
		return out
	}
	var sec, nsec int64
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(line, "=")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "last_handshake_time_sec":
			sec = n
		case "last_handshake_time_nsec":
			nsec = n
		case "rx_bytes":
			out.rx = n
		case "tx_bytes":
			out.tx = n
		case "endpoint":
			out.endpoint = v
		}
	}
	if sec != 0 {
		out.handshake = time.Unix(sec, nsec)
	}
	return out
}
