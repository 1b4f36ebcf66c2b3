package wan

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/internal/config"
)

// Approximate IP-level bytes of one probe, both ways, for the data budget of a metered modem.
const (
	bytesICMP = 2 * (20 + 8 + 8)               // echo request and reply with an 8-byte payload
	bytesTCP  = 60 + 60 + 52 + 40              // SYN, SYN-ACK, ACK, RST
	bytesDNS  = (20 + 8 + 17) + (20 + 8 + 100) // "." A query; answer with the root SOA
)

// ProbeBytes is the traffic of one probe of this kind.
func ProbeBytes(kind string) int {
	switch kind {
	case "icmp":
		return bytesICMP
	case "tcp":
		return bytesTCP
	default:
		return bytesDNS
	}
}

// MonthlyBytes is the probe traffic of an uplink over 30 days at interval per target.
func MonthlyBytes(targets []config.WANTarget, interval time.Duration) int64 {
	probes := int64(30 * 24 * time.Hour / interval)
	var n int64
	for _, t := range targets {
		n += probes * int64(ProbeBytes(t.Kind))
	}
	return n
}

// prober sends the probes of one uplink.
type prober struct {
	dev string

	mu      sync.Mutex
	icmp    net.PacketConn
	id      int
	seq     int
	pending map[int]chan time.Time
}

func newProber(dev string, index int) *prober {
	return &prober{dev: dev, id: (os.Getpid() + index) & 0xffff, pending: map[int]chan time.Time{}}
}

func (p *prober) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.icmp != nil {
		p.icmp.Close()
		p.icmp = nil
	}
}

// probe sends one probe and says whether it was answered within timeout, and how fast.
func (p *prober) probe(ctx context.Context, t config.WANTarget, src netip.Addr, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var err error
	switch t.Kind {
	case "icmp":
		err = p.ping(ctx, t.Addr.Addr(), src)
	case "tcp":
		err = p.tcp(ctx, t.Addr, src)
	case "dns":
		err = p.dns(ctx, t.Addr, src)
	default:
		err = fmt.Errorf("unknown probe kind %q", t.Kind)
	}
	return time.Since(start), err
}

func localAddr(src netip.Addr) net.IP {
	if src.IsValid() {
		return src.AsSlice()
	}
	return nil
}

// tcp connects; a refusal (RST) proves the path as well as an accept does.
func (p *prober) tcp(ctx context.Context, to netip.AddrPort, src netip.Addr) error {
	d := net.Dialer{Control: bind.Device(p.dev), LocalAddr: &net.TCPAddr{IP: localAddr(src)}}
	c, err := d.DialContext(ctx, "tcp4", to.String())
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		return err
	}
	// RST instead of FIN: fewer bytes on a metered line and no TIME_WAIT.
	_ = c.(*net.TCPConn).SetLinger(0)
	return c.Close()
}

// dns asks for "." A; any answer with our ID, or a port-unreachable, proves the path.
func (p *prober) dns(ctx context.Context, to netip.AddrPort, src netip.Addr) error {
	lc := net.ListenConfig{Control: bind.Device(p.dev)}
	pc, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort(ipString(src), "0"))
	if err != nil {
		return err
	}
	defer pc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = pc.SetDeadline(dl)
	}
	id := uint16(rand.Uint32())
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	b, err := msg.Pack()
	if err != nil {
		return err
	}
	dst := net.UDPAddrFromAddrPort(to)
	if _, err := pc.WriteTo(b, dst); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return nil
			}
			return err
		}
		if ua, ok := from.(*net.UDPAddr); !ok || ua.AddrPort().Addr().Unmap() != to.Addr() {
			continue
		}
		var h dnsmessage.Parser
		hdr, err := h.Start(buf[:n])
		if err == nil && hdr.ID == id && hdr.Response {
			return nil
		}
	}
}

func ipString(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return "0.0.0.0"
}

// ping sends one echo request on the uplink's raw ICMP socket and waits for its reply.
func (p *prober) ping(ctx context.Context, to, src netip.Addr) error {
	conn, err := p.icmpConn(src)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.seq = (p.seq + 1) & 0xffff
	seq := p.seq
	ch := make(chan time.Time, 1)
	p.pending[seq] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, seq)
		p.mu.Unlock()
	}()
	m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("appl-wan")}}
	b, err := m.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := conn.WriteTo(b, &net.IPAddr{IP: to.AsSlice()}); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// icmpConn opens the uplink's raw ICMP socket (bound to the device) and its reader; replies
// to every raw socket's echo come to all of them, so they are matched by ID and sequence.
func (p *prober) icmpConn(src netip.Addr) (net.PacketConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.icmp != nil {
		return p.icmp, nil
	}
	lc := net.ListenConfig{Control: bind.Device(p.dev)}
	addr := "0.0.0.0"
	if src.IsValid() {
		addr = src.String()
	}
	c, err := lc.ListenPacket(context.Background(), "ip4:icmp", addr)
	if err != nil {
		return nil, fmt.Errorf("wan: icmp socket on %s: %w", p.dev, err)
	}
	p.icmp = c
	go p.readICMP(c)
	return c, nil
}

func (p *prober) readICMP(c net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.ID != p.id {
			continue
		}
		p.mu.Lock()
		ch := p.pending[e.Seq]
		p.mu.Unlock()
		if ch != nil {
			select {
			case ch <- time.Now():
			default:
			}
		}
	}
}
