package sitelab

import (
	"net"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/officeedge/appliance/internal/lab"
)

// DNSServer answers every query (NXDOMAIN-free empty answer) after a settable delay: a probe
// target that can be made slow.
type DNSServer struct {
	conn  *net.UDPConn
	mu    sync.Mutex
	delay time.Duration
	wg    sync.WaitGroup
}

// StartDNS listens on addr in host.
func StartDNS(l *lab.Lab, host, addr string) (*DNSServer, error) {
	c, err := l.ListenUDP(host, addr)
	if err != nil {
		return nil, err
	}
	d := &DNSServer{conn: c}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil {
				continue
			}
			m.Header.Response, m.Header.RecursionAvailable = true, true
			resp, err := m.Pack()
			if err != nil {
				continue
			}
			d.mu.Lock()
			delay := d.delay
			d.mu.Unlock()
			if delay == 0 {
				_, _ = c.WriteToUDP(resp, from)
				continue
			}
			time.AfterFunc(delay, func() { _, _ = c.WriteToUDP(resp, from) })
		}
	}()
	return d, nil
}

// SetDelay makes every answer wait d.
func (d *DNSServer) SetDelay(delay time.Duration) {
	d.mu.Lock()
	d.delay = delay
	d.mu.Unlock()
}

// Close stops the server.
func (d *DNSServer) Close() { d.conn.Close(); d.wg.Wait() }
