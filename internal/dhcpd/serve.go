package dhcpd

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/ipv4"
	"golang.org/x/time/rate"

	"github.com/officeedge/appliance/internal/perclient"
	"github.com/officeedge/appliance/internal/udpbuf"
)

// The read loop's bounds. An office's devices send a few packets each when they join and
// one every half lease; a Windows laptop's INFORMs and a phone's retries fit in a burst.
const (
	workers  = 2   // the answers are made under one lock: more would only wait on it
	queueLen = 128 // per queue, packets waiting for a worker
	batch    = 64  // packets read in one system call
	// Each MAC: 1 packet a second, 8 at once; up to macTable MACs remembered.
	perMACRate, perMACBurst, macTable = 1, 8, 4096
	// Devices the server has never seen share 20 packets a second, 100 at once: a spoofed-MAC
	// flood cannot crowd out the devices with a lease.
	newcomerRate, newcomerBurst = 20, 100
	// Everything together: far above an office's need, far below what a flood sends.
	globalRate, globalBurst = 500, 1000
)

// limits are the read loop's admission: per MAC, for newcomers, overall.
type limits struct {
	perMAC    *perclient.Limiter
	newcomers *rate.Limiter
	global    *rate.Limiter
}

func newLimits() limits {
	return limits{perMAC: perclient.New(perMACRate, perMACBurst, macTable),
		newcomers: rate.NewLimiter(newcomerRate, newcomerBurst), global: rate.NewLimiter(globalRate, globalBurst)}
}

type packet struct {
	data []byte
	peer *net.UDPAddr
}

// serve reads packets in one loop and hands them to a few workers over bounded queues:
// the devices the server knows in one, newcomers in the other, served first. A packet over
// a limit or finding its queue full is dropped and counted. It returns when conn is closed.
func (s *Server) serve(conn *net.UDPConn) error {
	known, other := make(chan packet, queueLen), make(chan packet, queueLen)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(conn, known, other, stop)
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// recvmmsg: one system call for up to batch packets, so the loop keeps up with a flood
	// and the kernel's buffer (made big) seldom overflows, which would drop the office's
	// packets with the flood's.
	udpbuf.Grow(conn)
	pc := ipv4.NewPacketConn(conn)
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)} // one Ethernet frame: a DHCP message is at most 576 bytes in practice
	}
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, m := range msgs[:n] {
			s.take(m.Buffers[0][:m.N], m.Addr, known, other)
		}
	}
}

// take queues one packet for the workers, or drops it.
func (s *Server) take(b []byte, from net.Addr, known, other chan<- packet) {
	s.received.Add(1)
	mac, ok := requestMAC(b)
	if !ok {
		return
	}
	isKnown, why := s.admit(mac)
	if why != "" {
		return
	}
	peer, ok := from.(*net.UDPAddr)
	if !ok {
		return
	}
	if peer.IP == nil || peer.IP.To4().Equal(net.IPv4zero) {
		// A client without an address hears the answer by broadcast.
		peer = &net.UDPAddr{IP: net.IPv4bcast, Port: peer.Port}
	}
	q := other
	if isKnown {
		q = known
	}
	select {
	case q <- packet{data: bytes.Clone(b), peer: peer}:
	default:
		s.flood.drop(dropQueue, mac)
	}
}

// admit says whether a packet from mac is served, and whether the server knows mac; why is
// the limit it is over (and counted), or "".
func (s *Server) admit(mac [6]byte) (known bool, why string) {
	if v := s.view.Load(); v != nil {
		_, known = v.known[mac]
	}
	switch {
	case !s.lim.perMAC.Allow(macKey(mac)):
		why = dropMAC
	case !known && !s.lim.newcomers.Allow():
		why = dropNewcomer
	case !s.lim.global.Allow():
		why = dropGlobal
	}
	if why != "" {
		s.flood.drop(why, mac)
	}
	return known, why
}

func (s *Server) work(conn net.PacketConn, known, other <-chan packet, stop <-chan struct{}) {
	for {
		var p packet
		select {
		case p = <-known:
		default:
			select {
			case p = <-known:
			case p = <-other:
			case <-stop:
				return
			}
		}
		m, err := dhcpv4.FromBytes(p.data)
		if err != nil {
			continue
		}
		s.handle(conn, p.peer, m)
	}
}

// requestMAC is the client's MAC of a BOOTREQUEST from an Ethernet client on this link
// (relayed ones, with a gateway address, are not served), read from the fixed header.
func requestMAC(b []byte) (mac [6]byte, ok bool) {
	const fixed = 236 + 4 // the header and the magic cookie
	if len(b) < fixed || b[0] != byte(dhcpv4.OpcodeBootRequest) || b[1] != 1 || b[2] != 6 || !bytes.Equal(b[24:28], []byte{0, 0, 0, 0}) {
		return mac, false
	}
	return [6]byte(b[28:34]), true
}

// macKey is mac as perclient keys its clients: the IPv6 link-local address a device with
// this MAC makes itself (modified EUI-64), one address per MAC.
func macKey(mac [6]byte) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]})
}
