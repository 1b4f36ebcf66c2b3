// Package vpn runs the box's WireGuard door for remote phones: its key, its interface (kernel or user space), its peers, their configs and QR codes.
package vpn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/kernelfeat"
)

// Implementations of WireGuard the interface may run on.
const (
	Kernel    = "kernel"    // the kernel's wireguard module
	Userspace = "userspace" // golang.zx2c4.com/wireguard on a TUN device
)

// MTU of the tunnel: WireGuard's usual, which fits its 80-byte overhead in a 1500 link.
const MTU = 1420

// reconcileEvery is how often the interface is brought back to the configuration even
// without a reload (someone ran `wg set`, the link was deleted).
const reconcileEvery = 10 * time.Second

// Options are what the service needs from the daemon.
type Options struct {
	Config   *config.Config
	StateDir string // the box's key and the peers' generated keys live in StateDir/vpn
	Log      *slog.Logger
	// Revoked is told of each peer whose key the box deleted (the peer was removed from the
	// config, or brings its own key now), for the audit log; publicKey is "" if unreadable.
	Revoked func(name, publicKey string)
}

// Service is the WireGuard interface and its peers.
type Service struct {
	dir     string
	log     *slog.Logger
	key     wgtypes.Key
	revoked func(name, publicKey string)

	keyMu sync.Mutex // the peers' key files, and the config they were made for
	recMu sync.Mutex // one reconcile at a time (the loop, a reload, a rotation)

	mu    sync.Mutex
	cfg   *config.Config
	mode  string         // Kernel or Userspace once up
	iface string         // the interface up made
	dev   *device.Device // user space only
	uapi  net.Listener   // user space only
	wake  chan struct{}
}

// New loads the box's key (making it the first time) and the generated peers' keys.
func New(o Options) (*Service, error) {
	s := &Service{dir: filepath.Join(o.StateDir, "vpn"), log: o.Log, revoked: o.Revoked, wake: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.Default()
	}
	k, err := loadKey(filepath.Join(s.dir, "box.key"))
	if err != nil {
		return nil, err
	}
	s.key = k
	if err := checkKeys(o.Config); err != nil {
		return nil, err
	}
	// Peers removed while the box was off are revoked now.
	if err := s.setConfig(o.Config); err != nil {
		return nil, err
	}
	if _, _, err := s.keysNow(); err != nil {
		return nil, err
	}
	return s, nil
}

// PublicKey is the box's public key, which the phones' configs name.
func (s *Service) PublicKey() wgtypes.Key { return s.key.PublicKey() }

// Mode says which implementation runs the interface ("" before it is up).
func (s *Service) Mode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// Run brings the interface up, keeps it at the configuration until ctx ends, then removes it.
func (s *Service) Run(ctx context.Context) error {
	if err := s.up(); err != nil {
		return err
	}
	defer s.down()
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		if err := s.reconcile(); err != nil {
			s.log.Error("vpn: reconcile", "err", err)
			if errors.Is(err, errGone) {
				return err // the interface went away: the supervisor makes it again
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.wake:
		}
	}
}

// Reload takes new peers and their reach in place; a new listen_port, address or interface
// restarts the part (the daemon's start key). A removed peer is revoked before it returns:
// its key file is deleted and the interface drops it, which ends its session.
func (s *Service) Reload(c *config.Config) error {
	if err := checkKeys(c); err != nil {
		return err
	}
	serr := s.setConfig(c)
	if err := s.applyNow(); err != nil {
		return errors.Join(serr, fmt.Errorf("vpn: the interface did not take the new peers yet (tried again every %s): %w", reconcileEvery, err))
	}
	return serr
}

// applyNow brings the interface to the config at once rather than at the loop's next turn.
// An interface not up yet is no error: the loop makes it from the config in force.
func (s *Service) applyNow() error {
	err := s.reconcile()
	if errors.Is(err, errGone) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
		return nil
	}
	return err
}

func (s *Service) config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// up makes the interface: the kernel's WireGuard when a link of that type can be made,
// otherwise the user-space implementation on a TUN device with its UAPI socket (which
// wgctrl configures just like the kernel's).
func (s *Service) up() error {
	v := s.config().VPN
	name := v.Interface
	if l, err := netlink.LinkByName(name); err == nil {
		// Left by a run that died (a kernel link outlives the process), or someone else's.
		if l.Type() != "wireguard" && l.Type() != "tuntap" {
			return fmt.Errorf("vpn: interface %s exists and is a %s, not WireGuard", name, l.Type())
		}
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("vpn: remove stale %s: %w", name, err)
		}
	}
	mode := Kernel
	if err := kernelfeat.AddWireGuardLink(name); err != nil {
		mode = Userspace
		if err := s.upUserspace(name); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.mode, s.iface = mode, name
	s.mu.Unlock()
	if err := linkUp(v); err != nil {
		s.down()
		return err
	}
	s.log.Info("vpn: interface up", "interface", name, "implementation", mode, "address", v.Address, "port", v.ListenPort, "public_key", s.key.PublicKey().String())
	return nil
}

func (s *Service) upUserspace(name string) error {
	td, err := tun.CreateTUN(name, MTU)
	if err != nil {
		return fmt.Errorf("vpn: no kernel WireGuard and no TUN device: %w", err)
	}
	lg := &device.Logger{Verbosef: device.DiscardLogf, Errorf: func(f string, a ...any) { s.log.Warn("vpn: " + fmt.Sprintf(f, a...)) }}
	dev := device.NewDevice(td, conn.NewDefaultBind(), lg)
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		return fmt.Errorf("vpn: UAPI socket: %w", err)
	}
	ln, err := ipc.UAPIListen(name, f)
	if err != nil {
		f.Close()
		dev.Close()
		return fmt.Errorf("vpn: UAPI socket: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	s.mu.Lock()
	s.dev, s.uapi = dev, ln
	s.mu.Unlock()
	return nil
}

// down removes the interface (and ends the user-space device).
func (s *Service) down() {
	s.mu.Lock()
	dev, ln, mode, name := s.dev, s.uapi, s.mode, s.iface
	s.dev, s.uapi, s.mode = nil, nil, ""
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	if dev != nil {
		dev.Close() // closes the TUN device, which takes its link with it
		return
	}
	if mode == Kernel {
		if l, err := netlink.LinkByName(name); err == nil {
			_ = netlink.LinkDel(l)
		}
	}
}

var errGone = errors.New("vpn: the interface is gone")

// linkUp gives the interface its MTU and address and sets it up, where it is not already.
func linkUp(v config.VPN) error {
	l, err := netlink.LinkByName(v.Interface)
	if err != nil {
		return fmt.Errorf("%w: %v", errGone, err)
	}
	if l.Attrs().MTU != MTU {
		if err := netlink.LinkSetMTU(l, MTU); err != nil {
			return fmt.Errorf("vpn: %s: set MTU: %w", v.Interface, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: v.Address.Addr().AsSlice(), Mask: net.CIDRMask(v.Address.Bits(), 32)}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("vpn: %s: set address: %w", v.Interface, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("vpn: %s: set up: %w", v.Interface, err)
		}
	}
	return nil
}

// reconcile brings the device to the configuration: its link up with its address, the box's
// key and port, one peer per configured phone with its tunnel address as its only allowed
// source. It changes only what differs, so a peer's session and its roaming endpoint live
// through a reload.
func (s *Service) reconcile() error {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	c, keys, err := s.keysNow()
	if err != nil {
		return err
	}
	if err := linkUp(c.VPN); err != nil {
		return err
	}
	wc, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("vpn: wgctrl: %w", err)
	}
	defer wc.Close()
	d, err := wc.Device(c.VPN.Interface)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %v", errGone, err)
		}
		return fmt.Errorf("vpn: read %s: %w", c.VPN.Interface, err)
	}
	want := wgtypes.Config{}
	if d.PrivateKey != s.key {
		want.PrivateKey = &s.key
	}
	if port := int(c.VPN.ListenPort); d.ListenPort != port {
		want.ListenPort = &port
	}
	have := map[wgtypes.Key]wgtypes.Peer{}
	for _, p := range d.Peers {
		have[p.PublicKey] = p
	}
	desired := map[wgtypes.Key]bool{}
	for _, n := range c.VPN.PeerNames() {
		desired[keys[n].public] = true
	}
	// Removals first: a rotated peer's old key gives up its tunnel address to the new one.
	for k := range have {
		if !desired[k] {
			want.Peers = append(want.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
		}
	}
	for _, n := range c.VPN.PeerNames() {
		k := keys[n].public
		a := c.VPN.Peers[n].Address.Addr
		allowed := net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
		if p, ok := have[k]; ok && len(p.AllowedIPs) == 1 && p.AllowedIPs[0].String() == allowed.String() {
			continue
		}
		want.Peers = append(want.Peers, wgtypes.PeerConfig{PublicKey: k, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{allowed}})
	}
	if want.PrivateKey == nil && want.ListenPort == nil && len(want.Peers) == 0 {
		return nil
	}
	if err := wc.ConfigureDevice(c.VPN.Interface, want); err != nil {
		return fmt.Errorf("vpn: configure %s: %w", c.VPN.Interface, err)
	}
	s.log.Info("vpn: peers set", "interface", c.VPN.Interface, "peers", len(desired), "changed", len(want.Peers))
	return nil
}

// PeerStatus is one peer as the interface has it now.
type PeerStatus struct {
	Name          string     `json:"name"`
	Address       netip.Addr `json:"address"`
	PublicKey     string     `json:"public_key"`
	KeyByBox      bool       `json:"key_by_box"`         // the box made its key pair (its config is complete)
	Endpoint      string     `json:"endpoint,omitempty"` // its public address now ("" before it connected)
	LastHandshake time.Time  `json:"last_handshake,omitzero"`
	RxBytes       int64      `json:"rx_bytes"`
	TxBytes       int64      `json:"tx_bytes"`
	Reach         []string   `json:"reach"`
}

// Status is the VPN for the page and /metrics.
type Status struct {
	Interface      string       `json:"interface"`
	Implementation string       `json:"implementation"` // kernel or userspace
	PublicKey      string       `json:"public_key"`
	Address        string       `json:"address"`
	ListenPort     int          `json:"listen_port"`
	Endpoint       string       `json:"endpoint"`
	Peers          []PeerStatus `json:"peers"`
	Error          string       `json:"error,omitempty"`
}

// Status reads the interface's peers now.
func (s *Service) Status() Status {
	c, keys, err := s.keysNow()
	st := Status{Interface: c.VPN.Interface, Implementation: s.Mode(), PublicKey: s.key.PublicKey().String(),
		Address: c.VPN.Address.String(), ListenPort: int(c.VPN.ListenPort), Endpoint: c.VPN.EndpointHostPort()}
	if err != nil {
		st.Error = err.Error()
		return st
	}
	live := map[wgtypes.Key]wgtypes.Peer{}
	if wc, err := wgctrl.New(); err == nil {
		if d, err := wc.Device(c.VPN.Interface); err == nil {
			for _, p := range d.Peers {
				live[p.PublicKey] = p
			}
		} else if errors.Is(err, os.ErrNotExist) {
			st.Error = "the WireGuard interface " + c.VPN.Interface + " is not up"
		} else {
			st.Error = err.Error()
		}
		wc.Close()
	}
	for _, n := range c.VPN.PeerNames() {
		p := c.VPN.Peers[n]
		k := keys[n]
		ps := PeerStatus{Name: n, Address: p.Address.Addr, PublicKey: k.public.String(), KeyByBox: k.private != nil}
		for _, r := range p.Reach {
			ps.Reach = append(ps.Reach, r.String())
		}
		if lp, ok := live[k.public]; ok {
			if lp.Endpoint != nil {
				ps.Endpoint = lp.Endpoint.String()
			}
			ps.LastHandshake, ps.RxBytes, ps.TxBytes = lp.LastHandshakeTime, lp.ReceiveBytes, lp.TransmitBytes
		}
		st.Peers = append(st.Peers, ps)
	}
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return st
}
