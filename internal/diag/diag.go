// Package diag runs the status page's diagnostics from the box through a chosen uplink: ping, traceroute, DNS lookup, SIP OPTIONS and a packet capture.
package diag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/wan"
)

// Uplink is one way out of the box, as the diagnostics leave through it.
type Uplink struct {
	Role      string           `json:"role"` // primary or backup
	Name      string           `json:"name"`
	Interface string           `json:"interface"`
	Source    netip.Addr       `json:"source"` // its IPv4 address; invalid: the kernel picks one
	Resolvers []netip.AddrPort `json:"resolvers"`
}

// Bounds of one run: the page asks for no more than this.
const (
	MaxCount = 10
	MaxHops  = 30
	wait     = time.Second // for each reply
)

// ErrTarget means a target is neither an address nor a host name.
var ErrTarget = errors.New("diag: the target must be an IP address or a host name")

// Target checks what the page sent as a target: an IP address or a host name (letters,
// digits, hyphens and dots, as DNS has them), never anything that reads as an option.
func Target(s string) (string, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.String(), nil
	}
	if len(s) == 0 || len(s) > 253 {
		return "", ErrTarget
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", ErrTarget
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", ErrTarget
			}
		}
	}
	return strings.ToLower(s), nil
}

// Resolve turns a checked target into an IPv4 address, asking the uplink's resolvers for a
// host name: the answer the office would get through that line.
func Resolve(ctx context.Context, u Uplink, target string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(target); err == nil {
		return a, nil
	}
	ans, err := Lookup(ctx, u, target, "A")
	if err != nil {
		return netip.Addr{}, err
	}
	for _, rr := range ans.Records {
		if a, err := netip.ParseAddr(rr.Data); err == nil && rr.Type == "A" {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("diag: %s has no IPv4 address (%s from %s)", target, ans.Rcode, ans.Server)
}

// Reply is one answer to a ping, or one hop of a traceroute.
type Reply struct {
	Seq  int           `json:"seq"` // the ping's sequence number, or the hop's TTL
	From string        `json:"from,omitempty"`
	RTT  time.Duration `json:"rtt_ns"`
	Text string        `json:"text"` // as a person reads it
	Lost bool          `json:"lost"`
	Last bool          `json:"-"` // the target itself answered
}

// echo is one raw ICMP socket of a run, bound to the uplink; replies to every raw socket's
// echoes reach all of them, so they are told apart by the run's random ID.
type echo struct {
	pc *ipv4.PacketConn
	c  net.PacketConn
	id int
}

func openEcho(ctx context.Context, u Uplink) (*echo, error) {
	lc := net.ListenConfig{Control: bind.Device(u.Interface)}
	addr := "0.0.0.0"
	if u.Source.IsValid() {
		addr = u.Source.String()
	}
	c, err := lc.ListenPacket(ctx, "ip4:icmp", addr)
	if err != nil {
		return nil, fmt.Errorf("diag: icmp socket on %s: %w", u.Interface, err)
	}
	return &echo{pc: ipv4.NewPacketConn(c), c: c, id: int(rand.Uint32() & 0xffff)}, nil
}

func (e *echo) close() { e.c.Close() }

// send sends echo request seq with the given TTL (0: the default).
func (e *echo) send(to netip.Addr, seq, ttl int) (time.Time, error) {
	if ttl > 0 {
		if err := e.pc.SetTTL(ttl); err != nil {
			return time.Time{}, err
		}
	}
	m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: e.id, Seq: seq, Data: []byte("officeedge diag")}}
	b, err := m.Marshal(nil)
	if err != nil {
		return time.Time{}, err
	}
	start := time.Now()
	_, err = e.pc.WriteTo(b, nil, &net.IPAddr{IP: to.AsSlice()})
	return start, err
}

// await waits until deadline for the answer to seq: an echo reply from the target, or a
// time-exceeded or unreachable from a router on the way that quotes the request.
func (e *echo) await(seq int, deadline time.Time) (icmp.Type, netip.Addr, error) {
	_ = e.pc.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, _, from, err := e.pc.ReadFrom(buf)
		if err != nil {
			return nil, netip.Addr{}, err
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			continue
		}
		var src netip.Addr
		if ia, ok := from.(*net.IPAddr); ok {
			src, _ = netip.AddrFromSlice(ia.IP)
			src = src.Unmap()
		}
		switch b := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == ipv4.ICMPTypeEchoReply && b.ID == e.id && b.Seq == seq {
				return m.Type, src, nil
			}
		case *icmp.TimeExceeded:
			if quoted(b.Data, e.id, seq) {
				return m.Type, src, nil
			}
		case *icmp.DstUnreach:
			if quoted(b.Data, e.id, seq) {
				return m.Type, src, nil
			}
		}
	}
}

// quoted says whether an ICMP error's quoted datagram is our echo request id/seq.
func quoted(d []byte, id, seq int) bool {
	if len(d) < 20 {
		return false
	}
	ihl := int(d[0]&0x0f) * 4
	if len(d) < ihl+8 || d[9] != 1 || d[ihl] != 8 {
		return false
	}
	return int(binary.BigEndian.Uint16(d[ihl+4:])) == id && int(binary.BigEndian.Uint16(d[ihl+6:])) == seq
}

// Ping sends count echo requests a second apart through u and reports each one as it is
// answered or lost (to report, e.g. a stream to the page).
func Ping(ctx context.Context, u Uplink, to netip.Addr, count int, report func(Reply)) error {
	if !to.Is4() {
		return errors.New("diag: ping and traceroute take IPv4 addresses")
	}
	count = min(max(count, 1), MaxCount)
	e, err := openEcho(ctx, u)
	if err != nil {
		return err
	}
	defer e.close()
	stop := context.AfterFunc(ctx, func() { _ = e.pc.SetReadDeadline(time.Now()) })
	defer stop()
	for seq := 1; seq <= count; seq++ {
		start, err := e.send(to, seq, 0)
		if err != nil {
			return fmt.Errorf("diag: ping %s via %s: %w", to, u.Interface, err)
		}
		typ, from, err := e.await(seq, start.Add(wait))
		r := Reply{Seq: seq, RTT: time.Since(start)}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			r.Lost, r.RTT, r.Text = true, 0, fmt.Sprintf("seq %d: no reply within %s", seq, wait)
		case typ == ipv4.ICMPTypeEchoReply:
			r.From, r.Text = from.String(), fmt.Sprintf("seq %d: reply from %s in %s", seq, from, r.RTT.Round(10*time.Microsecond))
		default:
			r.Lost, r.From, r.Text = true, from.String(), fmt.Sprintf("seq %d: %s says %v", seq, from, typ)
		}
		report(r)
		if seq < count {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(start.Add(time.Second))):
			}
		}
	}
	return nil
}

// Traceroute sends one echo request per TTL through u until the target answers (or
// MaxHops), reporting each hop: the router whose time-exceeded came back, or a loss.
func Traceroute(ctx context.Context, u Uplink, to netip.Addr, report func(Reply)) error {
	if !to.Is4() {
		return errors.New("diag: ping and traceroute take IPv4 addresses")
	}
	e, err := openEcho(ctx, u)
	if err != nil {
		return err
	}
	defer e.close()
	stop := context.AfterFunc(ctx, func() { _ = e.pc.SetReadDeadline(time.Now()) })
	defer stop()
	for ttl := 1; ttl <= MaxHops; ttl++ {
		start, err := e.send(to, ttl, ttl)
		if err != nil {
			return fmt.Errorf("diag: traceroute %s via %s: %w", to, u.Interface, err)
		}
		typ, from, err := e.await(ttl, start.Add(wait))
		r := Reply{Seq: ttl, RTT: time.Since(start)}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			r.Lost, r.RTT, r.Text = true, 0, fmt.Sprintf("%2d  *", ttl)
		default:
			r.From, r.Text = from.String(), fmt.Sprintf("%2d  %s  %s", ttl, from, r.RTT.Round(10*time.Microsecond))
			r.Last = typ == ipv4.ICMPTypeEchoReply || typ == ipv4.ICMPTypeDestinationUnreachable
			if typ == ipv4.ICMPTypeDestinationUnreachable {
				r.Text += "  (unreachable)"
			}
		}
		report(r)
		if r.Last {
			return nil
		}
	}
	return nil
}

// Record is one resource record of an answer.
type Record struct {
	Name string `json:"name"`
	Type string `json:"type"`
	TTL  uint32 `json:"ttl"`
	Data string `json:"data"`
}

// Answer is what the uplink's resolver said.
type Answer struct {
	Server  string        `json:"server"`
	Rcode   string        `json:"rcode"`
	RTT     time.Duration `json:"rtt_ns"`
	Records []Record      `json:"records"`
}

// QTypes are the record types the page may ask for.
var QTypes = []string{"A", "AAAA", "MX", "TXT", "SRV", "NS", "CNAME", "PTR", "SOA"}

// Lookup asks the uplink's resolvers in turn, through that uplink, for name's records of
// qtype; the first that answers at all is the answer.
func Lookup(ctx context.Context, u Uplink, name, qtype string) (Answer, error) {
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return Answer{}, fmt.Errorf("diag: unknown record type %q", qtype)
	}
	if len(u.Resolvers) == 0 {
		return Answer{}, fmt.Errorf("diag: no resolver is known for %s", u.Name)
	}
	q := new(dns.Msg)
	if a, err := netip.ParseAddr(name); err == nil && qtype == "PTR" {
		name, _ = dns.ReverseAddr(a.String())
	}
	q.SetQuestion(dns.Fqdn(name), t)
	var errs []error
	for _, s := range u.Resolvers {
		d := &net.Dialer{Control: bind.Device(u.Interface), Timeout: 2 * time.Second}
		if u.Source.IsValid() && s.Addr().Is4() {
			d.LocalAddr = &net.UDPAddr{IP: u.Source.AsSlice()}
		}
		c := &dns.Client{Net: "udp", Dialer: d, Timeout: 2 * time.Second}
		resp, rtt, err := c.ExchangeContext(ctx, q, s.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			continue
		}
		ans := Answer{Server: s.String(), Rcode: dns.RcodeToString[resp.Rcode], RTT: rtt, Records: []Record{}}
		for _, rr := range resp.Answer {
			h := rr.Header()
			ans.Records = append(ans.Records, Record{Name: h.Name, Type: dns.TypeToString[h.Rrtype], TTL: h.Ttl,
				Data: strings.TrimPrefix(rr.String(), h.String())})
		}
		return ans, nil
	}
	return Answer{}, fmt.Errorf("diag: lookup %s %s via %s: %w", name, qtype, u.Name, errors.Join(errs...))
}

// SIPOptions sends one SIP OPTIONS to a trunk through u with the wan part's own check, and
// says how long the trunk took to answer.
func SIPOptions(ctx context.Context, u Uplink, to netip.AddrPort) (time.Duration, error) {
	rtt, err := wan.SIPOptions(ctx, u.Interface, u.Source, to, 3*time.Second)
	if err != nil {
		return 0, fmt.Errorf("diag: SIP OPTIONS to %s via %s: %w", to, u.Name, err)
	}
	return rtt, nil
}
