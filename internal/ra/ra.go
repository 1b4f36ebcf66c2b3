// Package ra sends IPv6 router advertisements on the LAN: its prefixes for devices to configure themselves (SLAAC), and the box as their DNS server (RDNSS).
package ra

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"

	"github.com/officeedge/appliance/internal/config"
)

// RFC 4861 6.2.4: the first advertisements after a start come at most 16s apart, so that
// devices learn the prefix quickly even if one is lost.
const (
	initialCount    = 3
	initialInterval = 16 * time.Second
	// answerEvery bounds the answers to solicitations: a flood of them is not answered more
	// often (the periodic advertisements still reach everyone).
	answerEvery = 100 * time.Millisecond
)

var (
	allNodes   = netip.MustParseAddr("ff02::1")
	allRouters = netip.MustParseAddr("ff02::2")
)

// settings are what the advertisements say, from the configuration.
type settings struct {
	iface     string
	prefixes  []netip.Prefix
	dns       netip.Addr
	domain    string
	interval  time.Duration
	lifetime  time.Duration
	valid     time.Duration
	preferred time.Duration
}

func settingsFrom(cfg *config.Config) settings {
	r := cfg.RA
	return settings{iface: cfg.LAN.Interface, prefixes: cfg.RAPrefixes(), dns: cfg.BoxLAN6(), domain: cfg.DHCP.Domain,
		interval: r.Interval, lifetime: r.RouterLifetime, valid: r.ValidLifetime, preferred: r.PreferredLifetime}
}

// Server advertises the LAN's prefixes on the LAN interface. It is safe for concurrent use.
type Server struct {
	log    *slog.Logger
	mu     sync.Mutex
	st     settings
	reload chan struct{}
}

// New makes the advertiser for cfg, or nil when [ra] is off or the LAN has no IPv6 /64.
func New(cfg *config.Config, log *slog.Logger) *Server {
	if !cfg.RAOn() {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	return &Server{log: log, st: settingsFrom(cfg), reload: make(chan struct{}, 1)}
}

// Reload takes new prefixes and lifetimes, advertised at once; the interface is a start setting.
func (s *Server) Reload(cfg *config.Config) error {
	s.mu.Lock()
	s.st = settingsFrom(cfg)
	s.mu.Unlock()
	select {
	case s.reload <- struct{}{}:
	default:
	}
	return nil
}

// Run advertises until ctx ends, then tells the devices the box is no longer their router
// (router lifetime 0). It answers router solicitations on the LAN interface only.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	iface := s.st.iface
	s.mu.Unlock()
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("ra: LAN interface %s: %w", iface, err)
	}
	// Bound to the interface's link-local address, as advertisements must come from it. A
	// LAN link that is down (a pulled cable at boot) has none yet: wait for it rather than
	// fail, which would be an alert for something the LAN LED already says.
	var c *ndp.Conn
	for {
		if c, _, err = ndp.Listen(ifi, ndp.LinkLocal); err == nil {
			break
		}
		if !strings.Contains(err.Error(), "not found on interface") {
			return fmt.Errorf("ra: listen on %s: %w", iface, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	defer c.Close()
	if err := c.JoinGroup(allRouters); err != nil {
		return fmt.Errorf("ra: join all-routers on %s: %w", iface, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("ra: filter on %s: %w", iface, err)
	}
	solicits := make(chan netip.Addr, 16)
	readErr := make(chan error, 1)
	go func() {
		for {
			m, _, from, err := c.ReadFrom()
			if err != nil {
				readErr <- err
				return
			}
			if _, ok := m.(*ndp.RouterSolicitation); ok {
				select {
				case solicits <- from:
				default: // many at once: the next advertisement answers them all
				}
			}
		}
	}()
	send := func(dst netip.Addr, lifetime bool) {
		s.mu.Lock()
		st := s.st
		s.mu.Unlock()
		if err := c.WriteTo(advertisement(st, ifi.HardwareAddr, lifetime), nil, dst); err != nil {
			s.log.Warn("router advertisement not sent", "iface", iface, "to", dst, "err", err)
		}
	}
	s.log.Info("router advertisements on", "iface", iface, "prefixes", fmt.Sprint(s.st.prefixes), "dns", s.st.dns)
	initial := initialCount
	timer := time.NewTimer(0)
	defer timer.Stop()
	var answered time.Time
	for {
		select {
		case <-ctx.Done():
			send(allNodes, false)
			return nil
		case err := <-readErr:
			return fmt.Errorf("ra: read on %s: %w", iface, err)
		case from := <-solicits:
			if time.Since(answered) < answerEvery {
				continue
			}
			answered = time.Now()
			dst := from
			if !from.IsValid() || from.IsUnspecified() {
				dst = allNodes // a device without an address yet (RFC 4861 6.2.6)
			}
			send(dst, true)
		case <-s.reload:
			send(allNodes, true)
		case <-timer.C:
			send(allNodes, true)
			s.mu.Lock()
			next := nextInterval(s.st.interval)
			s.mu.Unlock()
			if initial > 0 {
				initial--
				next = min(next, initialInterval)
			}
			timer.Reset(next)
		}
	}
}

// nextInterval is a random time from a third of max to max (RFC 4861 6.2.4), so that
// routers on one link do not fall into step.
func nextInterval(max time.Duration) time.Duration {
	lo := max / 3
	return lo + rand.N(max-lo+1)
}

// advertisement says: the box is the router (unless !router: it stops being one), these
// prefixes are on the link and devices may make addresses from them, and the box answers DNS.
func advertisement(st settings, mac net.HardwareAddr, router bool) *ndp.RouterAdvertisement {
	ra := &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  st.lifetime,
		Options:         []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac}},
	}
	if !router {
		ra.RouterLifetime = 0
	}
	for _, p := range st.prefixes {
		ra.Options = append(ra.Options, &ndp.PrefixInformation{
			PrefixLength: uint8(p.Bits()), OnLink: true, AutonomousAddressConfiguration: true,
			ValidLifetime: st.valid, PreferredLifetime: st.preferred, Prefix: p.Addr(),
		})
	}
	// RFC 8106 5.1: a DNS lifetime of at least three advertisement intervals.
	if st.dns.IsValid() {
		ra.Options = append(ra.Options, &ndp.RecursiveDNSServer{Lifetime: 3 * st.interval, Servers: []netip.Addr{st.dns}})
	}
	if st.domain != "" {
		ra.Options = append(ra.Options, &ndp.DNSSearchList{Lifetime: 3 * st.interval, DomainNames: []string{st.domain}})
	}
	return ra
}
