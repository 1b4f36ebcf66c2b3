// Package relay is the relay role (`appliance relay`): a small public host that owns the offices' voice addresses and carries their SIP and RTP through WireGuard tunnels to their boxes.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/thejerf/suture/v4"
	"github.com/vishvananda/netlink"

	"github.com/officeedge/appliance/internal/relay/wire"
	"github.com/officeedge/appliance/internal/vpn"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// Options are the relay's command-line settings.
type Options struct {
	ConfigPath    string
	StateDir      string // relay.key, the blocklist, sipguard's records
	ControlSocket string // the status socket ("" : STATEDIR/control.sock)
	Log           *slog.Logger
}

// StatusPath is the control socket's status endpoint (GET: Status as JSON).
const StatusPath = "/v1/status"

// part is one supervised piece of the relay.
type part struct {
	name string
	run  func(ctx context.Context) error
}

func (p part) Serve(ctx context.Context) error { return p.run(ctx) }
func (p part) String() string                  { return p.name }

// Run starts the relay and serves until ctx ends: the firewall first (nothing is forwarded
// before it is in), then the tunnel, sipguard, block sharing and the status socket. Each
// part runs under a supervisor and is restarted on its own; the firewall stays in the
// kernel when Run returns, so the host fails closed.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c, err := LoadConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	fw, err := c.Firewall()
	if err != nil {
		return err
	}
	if o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
			return fmt.Errorf("relay: state directory: %w", err)
		}
	}
	key, err := vpn.LoadKey(filepath.Join(o.StateDir, "relay.key"))
	if err != nil {
		return fmt.Errorf("relay: key: %w", err)
	}
	owner, err := newOwner(o.StateDir, o.Log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	root := suture.New("relay", suture.Spec{EventHook: func(e suture.Event) { o.Log.Warn("relay: " + e.String()) },
		FailureBackoff: 5 * time.Second, Timeout: 10 * time.Second})
	done := root.ServeBackground(ctx)
	var t *tunnel
	// The parts stop before the tunnel goes: sharing listens on voice0's addresses.
	defer func() {
		cancel()
		<-done
		if t != nil {
			t.close()
		}
	}()
	root.Add(part{"firewall", owner.Run})
	if err := owner.SetConfig(fw); err != nil {
		return fmt.Errorf("relay: firewall: %w", err)
	}
	o.Log.Info("relay: firewall applied", "table", "inet "+netcfg.TableName)
	if err := owner.SetProtected("relay", c.protections()); err != nil {
		return fmt.Errorf("relay: firewall: %w", err)
	}
	if t, err = openTunnel(c, key, o.Log); err != nil {
		return err
	}
	g, err := newGuard(c, fw, owner, o.StateDir, o.Log)
	if err != nil {
		return fmt.Errorf("relay: sipguard: %w", err)
	}
	root.Add(part{"sipguard", func(ctx context.Context) error { return runGuard(ctx, g, c.PublicInterface, c.sipPorts()) }})
	for _, n := range c.Names() {
		s := &shareServer{office: n, box: c.Office[n].Box(), store: owner, log: o.Log}
		root.Add(part{"share " + n, func(ctx context.Context) error {
			ln, err := listenShare(c.Office[n].Relay())
			if err != nil {
				return err
			}
			return serveShare(ctx, ln, s)
		}})
	}
	st := &statusSource{c: c, key: key, t: t, owner: owner, guard: g, reader: netcfg.New(0)}
	sock := o.ControlSocket
	if sock == "" {
		sock = filepath.Join(o.StateDir, "control.sock")
	}
	stop, err := serveControl(sock, st, o.Log)
	if err != nil {
		return err
	}
	defer stop()
	o.Log.Info("relay running", "config", o.ConfigPath, "public_key", key.PublicKey().String(),
		"listen_port", c.ListenPort, "offices", len(c.Office), "control", sock)
	<-ctx.Done()
	o.Log.Info("relay stopping; the firewall stays in place")
	return nil
}

// serveControl serves the status on a unix socket only root may use.
func serveControl(path string, st *statusSource, log *slog.Logger) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("relay: control socket: %w", err)
	}
	_ = os.Remove(path) // left by a relay that died
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("relay: control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("relay: control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, st.status()) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("relay: control socket", "err", err)
		}
	}()
	return func() { _ = srv.Close(); _ = os.Remove(path) }, nil
}

// Status is the relay's own state (`appliance relay show`).
type Status struct {
	PublicInterface string         `json:"public_interface"`
	PublicAddress   string         `json:"public_address,omitempty"`
	ListenPort      int            `json:"listen_port"`
	PublicKey       string         `json:"public_key"` // for the boxes' [relay] public_key
	Offices         []OfficeStatus `json:"offices"`
	// Blocks are the relay's own blocks (what it shares with the boxes); Kernel counts every
	// entry in its block sets, the boxes' shared ones included.
	Blocks        []Block            `json:"blocks"`
	Kernel        netcfg.BlockCounts `json:"kernel"`
	FirewallError string             `json:"firewall_error,omitempty"`
	SIPGuard      sipguard.Stats     `json:"sipguard"`
	Rejected      uint64             `json:"rejected_probes"` // unauthenticated probes dropped
	// Dropped is who the firewall turned away from the public side (top sources and ports).
	Dropped []netcfg.DroppedWindow `json:"dropped,omitempty"`
	Error   string                 `json:"error,omitempty"`
}

// OfficeStatus is one office's tunnel.
type OfficeStatus struct {
	Name      string      `json:"name"`
	PublicKey string      `json:"public_key"`
	Relay     string      `json:"relay"` // the relay's tunnel address (block sharing)
	Box       string      `json:"box"`   // where its SIP and RTP are forwarded
	SIPPort   int         `json:"sip_port"`
	RTPPorts  string      `json:"rtp_ports"`
	Peer      peerStatus  `json:"peer"`
	Paths     []wire.Path `json:"paths"` // the box's lines, as its probes were last heard
}

type statusSource struct {
	c      *Config
	key    interface{ String() string }
	t      *tunnel
	owner  *netcfg.Owner
	guard  *sipguard.Guard
	reader *netcfg.Firewall // its own socket for the dropped sets
}

func (s *statusSource) status() Status {
	c := s.c
	st := Status{PublicInterface: c.PublicInterface, ListenPort: int(c.ListenPort), PublicKey: s.key.String(), Rejected: s.t.bind.Rejected()}
	if c.PublicAddress.IsValid() {
		st.PublicAddress = c.PublicAddress.String()
	} else if a, ok := interfaceAddr(c.PublicInterface); ok {
		st.PublicAddress = a.String()
	}
	peers, err := s.t.peers()
	if err != nil {
		st.Error = err.Error()
	}
	for _, n := range c.Names() {
		o := c.Office[n]
		st.Offices = append(st.Offices, OfficeStatus{Name: n, PublicKey: o.Key.String(), Relay: o.Relay().String(), Box: o.Box().String(),
			SIPPort: int(o.SIPPort), RTPPorts: o.RTPPorts.String(), Peer: peers[o.Key], Paths: s.t.bind.Paths(n)})
	}
	bs := s.owner.State()
	st.Blocks, st.Kernel, st.FirewallError = ownBlocks(bs, time.Now()), bs.Kernel, bs.LastError
	st.SIPGuard, _ = s.guard.Snapshot()
	if d, err := s.reader.Dropped(10); err == nil {
		st.Dropped = d
	}
	return st
}

// protections are what the relay itself depends on, which the made config cannot know
// (its uplink is "dhcp" there): its own addresses and its default gateways. Nobody, a box
// sharing its blocks included, can block them.
func (c *Config) protections() []netcfg.Protection {
	var out []netcfg.Protection
	for _, a := range interfaceAddrs(c.PublicInterface) {
		out = append(out, netcfg.Protection{Prefix: netip.PrefixFrom(a, a.BitLen()), Why: "the relay's own address"})
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteList(nil, fam)
		if err != nil {
			continue
		}
		for _, r := range routes {
			gw, ok := netip.AddrFromSlice(r.Gw)
			if !ok {
				continue
			}
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue // not a default route
				}
			}
			gw = gw.Unmap()
			out = append(out, netcfg.Protection{Prefix: netip.PrefixFrom(gw, gw.BitLen()), Why: "the relay's gateway"})
		}
	}
	return out
}

// interfaceAddr is the interface's first IPv4 address: the public address when relay.toml
// gives none.
func interfaceAddr(name string) (netip.Addr, bool) {
	for _, a := range interfaceAddrs(name) {
		if a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// interfaceAddrs are the interface's addresses (none when it is missing).
func interfaceAddrs(name string) []netip.Addr {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// WriteText prints the status for a person.
func (st Status) WriteText(w io.Writer) {
	fmt.Fprintf(w, "relay %s on %s, WireGuard port %d\npublic key %s (the boxes' [relay] public_key)\n",
		st.PublicAddress, st.PublicInterface, st.ListenPort, st.PublicKey)
	for _, o := range st.Offices {
		hs := "never"
		if !o.Peer.LastHandshake.IsZero() {
			hs = time.Since(o.Peer.LastHandshake).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(w, "office %s: SIP %d, RTP %s -> box %s; handshake %s, from %s, in %d B, out %d B\n",
			o.Name, o.SIPPort, o.RTPPorts, o.Box, hs, OrDash(o.Peer.Endpoint), o.Peer.RxBytes, o.Peer.TxBytes)
		for _, p := range o.Paths {
			dup := ""
			if p.Duplicate {
				dup = ", duplicating"
			}
			fmt.Fprintf(w, "  line %d from %s, heard %s ago%s\n", p.Line, p.Addr, time.Since(p.LastSeen).Round(time.Millisecond), dup)
		}
	}
	fmt.Fprintf(w, "blocked: %d addresses and networks in the kernel, %d of the relay's own (shared with the boxes)\n", st.Kernel.Total(), len(st.Blocks))
	for _, b := range st.Blocks {
		until := "until unblocked"
		if !b.Until.IsZero() {
			until = "until " + b.Until.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  %s %s: %s\n", b.Prefix, until, b.Reason)
	}
	for _, d := range st.Dropped {
		if d.Window != "hour" || len(d.Sources) == 0 {
			continue
		}
		fmt.Fprintf(w, "turned away in the last hour (%d sources):", d.Seen)
		for _, s := range d.Sources {
			fmt.Fprintf(w, " %s (%d)", s.Key, s.Packets)
		}
		fmt.Fprintln(w)
	}
	if st.FirewallError != "" {
		fmt.Fprintf(w, "firewall: the last write failed: %s\n", st.FirewallError)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "error: %s\n", st.Error)
	}
}

// OrDash is s, or "-" when it is empty: a blank cell in a status table.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
