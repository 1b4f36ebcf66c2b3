package dnsfwd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/wan"
)

// Upstream is where forwarded queries go now: the active uplink's resolvers, through that
// uplink only.
type Upstream struct {
	Uplink    string           `json:"uplink"` // its name
	Role      wan.Role         `json:"role"`
	Interface string           `json:"interface"`
	Source    netip.Addr       `json:"source"` // its IPv4 address; invalid: the kernel picks one on Interface
	Servers   []netip.AddrPort `json:"servers"`
}

func (u *Upstream) String() string {
	if u == nil || len(u.Servers) == 0 {
		return "no resolver"
	}
	s := make([]string, len(u.Servers))
	for i, a := range u.Servers {
		s[i] = a.String()
	}
	return fmt.Sprintf("%s via %s (%s)", strings.Join(s, ", "), u.Uplink, u.Interface)
}

func (u *Upstream) same(o *Upstream) bool {
	if u == nil || o == nil {
		return u == o
	}
	return u.Role == o.Role && u.Interface == o.Interface && u.Source == o.Source && slices.Equal(u.Servers, o.Servers)
}

// Via is the active uplink of st as a way out, with no resolvers yet; false when no uplink
// is active.
func Via(st wan.Status) (*Upstream, bool) {
	for _, us := range st.Uplinks {
		if us.Role != st.Active {
			continue
		}
		u := &Upstream{Uplink: us.Name, Role: us.Role, Interface: us.Interface}
		if a, err := netip.ParseAddr(us.Address); err == nil && a.Is4() {
			u.Source = a
		}
		return u, true
	}
	return nil, false
}

// pick finds the active uplink and its resolvers: those it learned (DHCP) first, then the
// configured ones, then the system's (resolv.conf) as a last resort. Nil when wan is off
// or knows no active uplink (Fixed without wan).
func (f *Forwarder) pick() *Upstream {
	if f.o.WAN == nil {
		if len(f.o.Fixed) > 0 {
			return &Upstream{Uplink: "fixed", Servers: f.o.Fixed}
		}
		return nil
	}
	st, ok := f.o.WAN()
	if !ok {
		return nil
	}
	u, ok := Via(st)
	if !ok {
		return nil
	}
	var learned []netip.Addr
	if f.o.Learned != nil {
		for _, us := range st.Uplinks {
			if us.Role == st.Active {
				learned = f.o.Learned(us)
			}
		}
	}
	u.Servers = Servers(u.Source, learned, f.o.Configured[u.Role], f.o.System, f.own)
	return u
}

// Servers are the resolvers to ask through an uplink whose IPv4 address is src (invalid:
// it has none): those it learned (DHCP) first, then the ones configured for it, then the
// system's (resolv.conf) as a last resort. Never a loopback address or one skip names (the
// box itself: a loop), nor an IPv4 one with no IPv4 address to send from. The forwarder,
// the box's own lookups and the page's diagnostics all ask in this order.
func Servers(src netip.Addr, learned, configured, system []netip.Addr, skip func(netip.Addr) bool) []netip.AddrPort {
	all := append(append([]netip.Addr{}, learned...), configured...)
	if len(all) == 0 {
		all = system
	}
	out := []netip.AddrPort{}
	for _, a := range all {
		ap := netip.AddrPortFrom(a.Unmap(), 53)
		if !a.IsValid() || a.IsLoopback() || (skip != nil && skip(a)) || (ap.Addr().Is4() && !src.IsValid()) || slices.Contains(out, ap) {
			continue
		}
		out = append(out, ap)
	}
	return out
}

func (f *Forwarder) own(a netip.Addr) bool {
	for _, l := range f.o.Listen {
		if l.Addr() == a.Unmap() {
			return true
		}
	}
	return false
}

// DialContext dials address through the uplink only: bound to its interface (so nothing
// takes the other line's route) and, for IPv4, to its address. A host name is resolved
// first, for the family the uplink can send from.
func (u *Upstream) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d := &net.Dialer{Control: bind.Device(u.Interface)}
	ap, err := netip.ParseAddrPort(address)
	v6 := err == nil && ap.Addr().Is6()
	if u.Source.IsValid() && !v6 && (network == "udp" || network == "tcp") {
		network += "4" // a name resolves to the family the source address has
		if network == "tcp4" {
			d.LocalAddr = &net.TCPAddr{IP: u.Source.AsSlice()}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: u.Source.AsSlice()}
		}
	}
	return d.DialContext(ctx, network, address)
}

// tryTimeout is one resolver's time to answer before the next one is asked.
const tryTimeout = 1500 * time.Millisecond

var errNoUpstream = errors.New("dnsfwd: no resolver known for the active uplink")

// exchange asks the upstream's resolvers in turn, over UDP and over TCP when the answer
// was truncated, for at most 2*tryTimeout in all. A REFUSED or SERVFAIL answer moves on to
// the next resolver; the last one's answer is returned when none does better. Time limits
// are the sockets' deadlines, not a context's: a context's timer that fires starts a
// goroutine, and a flood of names to a dead resolver must not start one per query.
func (u *Upstream) exchange(q *dns.Msg) (*dns.Msg, error) {
	if u == nil || len(u.Servers) == 0 {
		return nil, errNoUpstream
	}
	end := time.Now().Add(2 * tryTimeout)
	var last *dns.Msg
	var errs []error
	for _, s := range u.Servers {
		resp, err := u.ask("udp", s, q, end)
		if err == nil && resp.Truncated {
			resp, err = u.ask("tcp", s, q, end)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			if !time.Now().Before(end) {
				break
			}
			continue
		}
		if resp.Rcode != dns.RcodeServerFailure && resp.Rcode != dns.RcodeRefused {
			return resp, nil
		}
		last = resp
	}
	if last != nil {
		return last, nil
	}
	return nil, fmt.Errorf("dnsfwd: %s: %w", u, errors.Join(errs...))
}

func (u *Upstream) ask(network string, s netip.AddrPort, q *dns.Msg, end time.Time) (*dns.Msg, error) {
	timeout := min(tryTimeout, time.Until(end))
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	// A socket of its own per query, so a random source port: with the ID, what a spoofer on
	// the way must guess. It is about 40 % of a miss's cost (socket, connect, close; pprof of
	// BenchmarkMiss), and misses still run at three times dnsmasq's rate (bench-dns).
	// The dial's timer is stopped as soon as it returns (at once over UDP): it never fires.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	nc, err := u.DialContext(ctx, network, s.String())
	cancel()
	if err != nil {
		return nil, err
	}
	conn := &dns.Conn{Conn: nc, UDPSize: dns.DefaultMsgSize}
	defer conn.Close()
	c := &dns.Client{Net: network, Timeout: timeout, UDPSize: dns.DefaultMsgSize}
	resp, _, err := c.ExchangeWithConnContext(context.Background(), q, conn)
	return resp, err
}
