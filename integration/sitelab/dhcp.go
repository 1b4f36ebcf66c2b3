package sitelab

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/officeedge/appliance/internal/lab"
)

// ConfigDHCPBackup is Config with the LTE uplink in DHCP mode.
func ConfigDHCPBackup(wanLines ...string) []byte {
	c := string(Config(wanLines...))
	return []byte(strings.Replace(c, "mode = \"static\"\naddress = \""+lab.BoxLTE4+"/30\"\ngateway = \""+lab.LTEGW4+"\"\n", "mode = \"dhcp\"\n", 1))
}

// DHCPServer is the LTE ISP's DHCP server on its customer side: it leases the box's LTE
// address with a short lease, so that renewals happen within a test.
type DHCPServer struct {
	srv      *server4.Server
	mu       sync.Mutex
	addr     net.IP
	mask     net.IPMask
	router   net.IP
	lease    time.Duration
	id       net.IP // server identifier: stays the same when the offer changes
	Requests int    // DHCPREQUESTs answered (the first and every renewal)
	asked    []string
	done     chan struct{}
}

// StartDHCP serves on iface in host, leasing addr/mask with router for lease.
func StartDHCP(l *lab.Lab, host, iface string, addr, router string, bits int, lease time.Duration) (*DHCPServer, error) {
	d := &DHCPServer{addr: net.ParseIP(addr).To4(), mask: net.CIDRMask(bits, 32), router: net.ParseIP(router).To4(), lease: lease, done: make(chan struct{})}
	d.id = d.router
	err := l.Do(host, func() error {
		var err error
		d.srv, err = server4.NewServer(iface, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, d.handle)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sitelab: dhcp server: %w", err)
	}
	go func() { defer close(d.done); _ = d.srv.Serve() }()
	return d, nil
}

// Offer changes what the next answers lease.
func (d *DHCPServer) Offer(addr, router string, bits int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addr, d.router, d.mask = net.ParseIP(addr).To4(), net.ParseIP(router).To4(), net.CIDRMask(bits, 32)
}

// Asked lists the address each DISCOVER asked for ("" for none), in order.
func (d *DHCPServer) Asked() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.asked...)
}

// Count is the number of DHCPREQUESTs answered so far.
func (d *DHCPServer) Count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Requests
}

func (d *DHCPServer) handle(conn net.PacketConn, _ net.Addr, m *dhcpv4.DHCPv4) {
	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
	default:
		return
	}
	d.mu.Lock()
	if typ == dhcpv4.MessageTypeAck {
		d.Requests++
	} else {
		asked := ""
		if ip := m.RequestedIPAddress(); ip != nil && !ip.IsUnspecified() {
			asked = ip.String()
		}
		d.asked = append(d.asked, asked)
	}
	resp, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(d.addr),
		dhcpv4.WithNetmask(d.mask),
		dhcpv4.WithRouter(d.router),
		dhcpv4.WithDNS(d.router), // option 6: the ISP's resolver is its router, as on most modems
		dhcpv4.WithServerIP(d.id),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(d.id)),
		dhcpv4.WithLeaseTime(uint32(d.lease/time.Second)),
	)
	d.mu.Unlock()
	if err != nil {
		return
	}
	// The client has no address yet (or is renewing from it): broadcast is always heard.
	_, _ = conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
}

// Close stops the server.
func (d *DHCPServer) Close() { _ = d.srv.Close(); <-d.done }
