package dhcptest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/officeedge/appliance/internal/lab"
)

// Kind is a hostile device's flood.
type Kind string

const (
	// Requests: one MAC asks for (and renews) one address of the pool without end.
	Requests Kind = "request"
	// Declines: one MAC reports every address of the pool in use, then distinct addresses
	// outside it, one per packet.
	Declines Kind = "decline"
	// Spoofed: 200 made-up MACs each DISCOVER, REQUEST an address of the pool with a host
	// name to take over (wpad, the box's, the PBX's), and DECLINE it.
	Spoofed Kind = "spoofed"
)

// Kinds are the floods, in the order the test and the benchmark send them.
var Kinds = []Kind{Requests, Declines, Spoofed}

// Flooder sends DHCP floods from a LAN host's interface, as broadcasts to the servers' port.
type Flooder struct {
	conn     net.PacketConn
	server   net.IP
	first    uint32 // the pool's first address
	poolSize uint32
	sent     atomic.Uint64
}

// NewFlooder opens the flooder's socket in host on iface (the host needs no address).
// server is the DHCP server's address (its server identifier), pool the range it hands out.
func NewFlooder(l *lab.Lab, host, iface, server string, first, last netip.Addr) (*Flooder, error) {
	f := &Flooder{server: net.ParseIP(server).To4(), first: u32(first), poolSize: u32(last) - u32(first) + 1}
	err := l.Do(host, func() error {
		var err error
		f.conn, err = server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: dhcpv4.ClientPort})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dhcptest: flooder in %s: %w", host, err)
	}
	return f, nil
}

// Sent is how many packets the flooder sent.
func (f *Flooder) Sent() uint64 { return f.sent.Load() }

// Close closes the socket.
func (f *Flooder) Close() error { return f.conn.Close() }

// Run sends kind until ctx ends, at about pps packets a second (0: as fast as it can).
func (f *Flooder) Run(ctx context.Context, kind Kind, pps int) error {
	to := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	start := time.Now()
	for i := uint64(0); ctx.Err() == nil; i++ {
		m, err := f.packet(kind, i)
		if err != nil {
			return err
		}
		if _, err := f.conn.WriteTo(m.ToBytes(), to); err != nil {
			return fmt.Errorf("dhcptest: flood: %w", err)
		}
		f.sent.Add(1)
		if pps > 0 && i%100 == 99 {
			if ahead := time.Duration(float64(i+1)/float64(pps)*float64(time.Second)) - time.Since(start); ahead > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(ahead):
				}
			}
		}
	}
	return nil
}

// names are the host names the spoofed MACs try to take.
var names = []string{"wpad", "gateway", "pbx", "deskphone", "isatap", "pc-one"}

func (f *Flooder) packet(kind Kind, i uint64) (*dhcpv4.DHCPv4, error) {
	poolSize := uint64(f.poolSize)
	inPool := func(n uint64) net.IP {
		x := f.first + uint32(n%poolSize)
		return net.IPv4(byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
	}
	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(f.server))
	switch kind {
	case Requests:
		return dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{0x02, 0xf1, 0, 0, 0, 1}), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(inPool(poolSize-1))), sid, dhcpv4.WithOption(dhcpv4.OptHostName("flood")))
	case Declines:
		ip := inPool(i)
		if i >= poolSize {
			ip = net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)) // a million distinct addresses
		}
		return dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{0x02, 0xf1, 0, 0, 0, 2}), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), sid)
	case Spoofed:
		n := (i / 3) % 200
		hw := net.HardwareAddr{0x02, 0xf2, 0, 0, byte(n >> 8), byte(n)}
		ip := inPool(n)
		switch i % 3 {
		case 0:
			return dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
		case 1:
			return dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), sid, dhcpv4.WithOption(dhcpv4.OptHostName(names[n%uint64(len(names))])))
		default:
			return dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), sid)
		}
	}
	return nil, fmt.Errorf("dhcptest: no flood %q", kind)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
