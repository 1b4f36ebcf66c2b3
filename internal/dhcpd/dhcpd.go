// Package dhcpd is the office's DHCPv4 server on the LAN: pool, static leases, phone provisioning, and a refusal to serve beside another DHCP server.
package dhcpd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/time/rate"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// Alert keys the server raises.
const (
	// KeyRefused: the server does not hand out addresses (another server answers on the
	// LAN, or the LAN could not be checked).
	KeyRefused = "dhcp.refused"
	// KeyLeases: the leases could not be saved (they are kept in memory meanwhile).
	KeyLeases = "dhcp.leases"
	// KeyNewDevices: more devices never seen before asked for an address than
	// new_devices_per_hour lets in.
	KeyNewDevices = "dhcp.new_devices"
)

// checkRetry is how soon a check that could not be made (the LAN link down at boot) is tried again.
const checkRetry = 10 * time.Second

// Options are what the server is connected to.
type Options struct {
	StateDir string // the leases are kept in StateDir/dhcp-leases.json; "": in memory only
	Alerts   *alerts.Store
	Bus      *events.Bus
	Log      *slog.Logger
	Now      func() time.Time
}

// Status is the server's state for the page.
type Status struct {
	Serving bool   `json:"serving"`
	Message string `json:"message"` // what it is doing, in plain words
	// Other is the other DHCP server found on the LAN, if any.
	Other  string  `json:"other,omitempty"`
	Pool   string  `json:"pool"`
	Leases []Lease `json:"leases"`
}

// Server is the DHCP server. Make it with New, then Run it; it is safe for concurrent use.
type Server struct {
	o     Options
	path  string
	lim   limits
	flood *floodLog
	view  atomic.Pointer[view] // what DNS and the read loop see, without mu

	mu       sync.Mutex
	st       settings
	t        *table
	serving  bool
	message  string
	other    netip.Addr
	ownMAC   net.HardwareAddr
	full     time.Time     // when "pool full" was last said
	newLim   *rate.Limiter // new devices given an address (settings.newPerHour)
	newAlert time.Time     // when the new-devices alert was last raised
	dirty    bool          // the table changed since it was saved
	recheck  chan struct{}

	saveMu   sync.Mutex // one write of the lease file at a time, in order
	saveKick chan struct{}
	received atomic.Uint64
	writes   atomic.Uint64
}

// Counters are what the server has done since it started.
type Counters struct {
	Received uint64 // packets read
	Dropped  uint64 // packets not served: over a limit, or their queue full
	Writes   uint64 // writes of the lease file
	// DroppedBy are the Dropped by short, stable reason: per_device_limit, newcomer_limit,
	// global_limit, queue_full, new_devices_limit, decline (absent: none yet).
	DroppedBy map[string]uint64
}

// Counters are the server's counters.
func (s *Server) Counters() Counters {
	return Counters{Received: s.received.Load(), Dropped: s.flood.total.Load(), Writes: s.writes.Load(), DroppedBy: s.flood.droppedBy()}
}

// New makes the server for cfg, or nil when [dhcp] is off. Saved leases are read now.
func New(cfg *config.Config, o Options) (*Server, error) {
	if !cfg.DHCP.Enabled {
		return nil, nil
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, st: settingsFrom(cfg), message: "checking the LAN for another DHCP server", recheck: make(chan struct{}, 1),
		saveKick: make(chan struct{}, 1), lim: newLimits(), flood: newFloodLog(o.Log)}
	s.newLim = s.st.newDeviceLimiter()
	s.t = newTable()
	if o.StateDir != "" {
		s.path = filepath.Join(o.StateDir, "dhcp-leases.json")
		t, err := load(s.path)
		s.t = t
		if err != nil {
			s.alert(KeyLeases, err.Error())
		}
	}
	s.t.prune(&s.st, o.Now())
	s.publishLocked()
	return s, nil
}

// newDeviceLimiter lets new devices in: newPerHour an hour, and a quarter of the pool (at
// least 8) at once: a morning's newcomers get in, a spoofed-MAC flood takes no more.
func (st *settings) newDeviceLimiter() *rate.Limiter {
	burst := min(st.newPerHour, max(8, int(st.pool.Size()/4)))
	return rate.NewLimiter(rate.Limit(float64(st.newPerHour)/3600), burst)
}

// Reload takes new settings in place; the interface is a start setting (see the daemon).
func (s *Server) Reload(cfg *config.Config) error {
	s.mu.Lock()
	old := s.st
	s.st = settingsFrom(cfg)
	if s.st.newPerHour != old.newPerHour || s.st.pool != old.pool {
		s.newLim = s.st.newDeviceLimiter()
	}
	s.t.prune(&s.st, s.o.Now())
	s.changedLocked(true)
	s.mu.Unlock()
	select {
	case s.recheck <- struct{}{}:
	default:
	}
	return nil
}

// Run listens on the LAN interface only and serves until ctx ends. Before serving, and
// every check_interval, it sends a DISCOVER of its own: while another server answers, it
// stays silent and says so in an alert.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	iface := s.st.iface
	s.mu.Unlock()
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("dhcpd: LAN interface %s: %w", iface, err)
	}
	s.mu.Lock()
	s.ownMAC = ifi.HardwareAddr
	s.mu.Unlock()
	// Bound to the LAN interface: a DISCOVER from an uplink never reaches this socket.
	conn, err := server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		return fmt.Errorf("dhcpd: listen on %s: %w", iface, err)
	}
	// server4's own loop starts a goroutine per packet: a flood would start millions. Ours
	// reads in one loop and hands the packets to a few workers (serve.go).
	served := make(chan error, 1)
	go func() { served <- s.serve(conn) }()
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.saveLoop(bg) }()
	go func() { defer wg.Done(); s.flood.run(bg) }()
	defer func() {
		conn.Close()
		if err := <-served; err != nil {
			s.o.Log.Warn("dhcp read loop", "err", err)
		}
		stopBG()
		wg.Wait()
		s.flush()
		s.setServing(false, "stopped", netip.Addr{})
		if s.o.Alerts != nil {
			s.o.Alerts.Clear(KeyRefused)
		}
	}()
	for {
		next := time.After(s.check(ctx, iface))
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			served <- nil // for the deferred wait
			return fmt.Errorf("dhcpd: serving on %s: %w", iface, err)
		case <-s.recheck:
		case <-next:
		}
	}
}

// check looks for another DHCP server and serves or refuses accordingly; it returns when
// to look again. It runs on Run's goroutine, where the probe's socket is made.
func (s *Server) check(ctx context.Context, iface string) time.Duration {
	s.mu.Lock()
	every := s.st.checkEvery
	s.mu.Unlock()
	offer, err := Probe(ctx, iface)
	switch {
	case ctx.Err() != nil:
		return every
	case err != nil:
		msg := fmt.Sprintf("not handing out addresses: the LAN could not be checked for another DHCP server (%v); trying again", err)
		s.refuse(msg, netip.Addr{})
		return checkRetry
	case offer != nil:
		other, _ := netip.AddrFromSlice(offer.ServerIdentifier().To4())
		if !other.IsValid() {
			other, _ = netip.AddrFromSlice(offer.ServerIPAddr.To4())
		}
		offered, _ := netip.AddrFromSlice(offer.YourIPAddr.To4())
		msg := fmt.Sprintf("not handing out addresses: another DHCP server (%s) answers on the LAN (it offered %s). "+
			"Two servers would give devices conflicting addresses: switch that one off, or set [dhcp] enabled = false here", other, offered)
		s.refuse(msg, other)
		return every
	}
	s.mu.Lock()
	pool := s.st.pool
	s.mu.Unlock()
	s.setServing(true, fmt.Sprintf("handing out %s on %s; no other DHCP server answers on the LAN", pool, iface), netip.Addr{})
	return every
}

func (s *Server) refuse(msg string, other netip.Addr) {
	if s.setServing(false, msg, other) {
		s.o.Log.Error("dhcp server refuses to serve", "reason", msg)
		s.publish(events.Event{Kind: "dhcp.refused", Severity: events.Alert, Source: "dhcp", Message: msg,
			Fields: map[string]string{"other": addrText(other)}})
	}
	s.alert(KeyRefused, msg)
}

// setServing records the state and reports whether it changed.
func (s *Server) setServing(on bool, msg string, other netip.Addr) bool {
	s.mu.Lock()
	changed := s.serving != on || s.other != other
	s.serving, s.message, s.other = on, msg, other
	s.mu.Unlock()
	if on && changed {
		s.o.Log.Info("dhcp server serving", "detail", msg)
		s.publish(events.Event{Kind: "dhcp.serving", Source: "dhcp", Message: msg})
		if s.o.Alerts != nil {
			s.o.Alerts.Clear(KeyRefused)
		}
	}
	return changed
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func (s *Server) alert(key, msg string) {
	if s.o.Alerts != nil {
		s.o.Alerts.Raise(key, "dhcp", msg)
	}
}

func (s *Server) publish(e events.Event) {
	if s.o.Bus != nil {
		s.o.Bus.Publish(e)
	}
}

// Status is the server's state and its leases.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Serving: s.serving, Message: s.message, Other: addrText(s.other), Pool: s.st.pool.String(),
		Leases: s.t.list(&s.st, s.o.Now())}
}

// Leases are the static leases and the dynamic ones in force, in address order.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.list(&s.st, s.o.Now())
}
