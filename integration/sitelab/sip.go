package sitelab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/lab"
)

// SIPServer answers every SIP request with 200 OK and marks the Via with received= and rport=,
// as SIP servers do, so the sender sees which public address (uplink) its request came from.
type SIPServer struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	on      bool
	contact *net.UDPAddr // where the last REGISTER came from: the registrar's binding
	wg      sync.WaitGroup
}

// StartSIPServer listens on addr in host.
func StartSIPServer(l *lab.Lab, host, addr string) (*SIPServer, error) {
	c, err := l.ListenUDP(host, addr)
	if err != nil {
		return nil, err
	}
	s := &SIPServer{conn: c, on: true}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 4096)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			on := s.on
			if on && bytes.HasPrefix(buf[:n], []byte("REGISTER ")) {
				s.contact = from
			}
			s.mu.Unlock()
			if !on {
				continue
			}
			if resp := sipResponse(buf[:n], from); resp != nil {
				_, _ = c.WriteToUDP(resp, from)
			}
		}
	}()
	return s, nil
}

// Contact is the address the last REGISTER came from (nil before one): where a trunk sends
// the office's inbound calls.
func (s *SIPServer) Contact() *net.UDPAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.contact
}

// Invite sends an INVITE for an inbound call to the registered contact, from the server's
// own address and port (a SIP trunk's signalling address).
func (s *SIPServer) Invite(n int) error {
	to := s.Contact()
	if to == nil {
		return errors.New("sitelab: no registration yet")
	}
	msg := fmt.Sprintf("INVITE sip:pbx@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-in%d\r\nMax-Forwards: 70\r\n"+
		"From: <sip:caller@%s>;tag=in%d\r\nTo: <sip:pbx@%s>\r\nCall-ID: inbound-%d@%s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		to, s.conn.LocalAddr(), n, lab.Trunk4, n, to, n, lab.Trunk4)
	_, err := s.conn.WriteToUDP([]byte(msg), to)
	return err
}

// Answer switches the server's answers on or off (a trunk that stops answering).
func (s *SIPServer) Answer(on bool) {
	s.mu.Lock()
	s.on = on
	s.mu.Unlock()
}

// Close stops the server.
func (s *SIPServer) Close() { s.conn.Close(); s.wg.Wait() }

func sipResponse(req []byte, from *net.UDPAddr) []byte {
	lines := strings.Split(string(req), "\r\n")
	if len(lines) < 2 || strings.HasPrefix(lines[0], "SIP/2.0") {
		return nil
	}
	var out []string
	out = append(out, "SIP/2.0 200 OK")
	for _, h := range lines[1:] {
		name, _, _ := strings.Cut(h, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via":
			h = strings.Replace(h, ";rport", "", 1) + fmt.Sprintf(";received=%s;rport=%d", from.IP, from.Port)
			out = append(out, h)
		case "from", "to", "call-id", "cseq":
			out = append(out, h)
		}
	}
	out = append(out, "Content-Length: 0", "", "")
	return []byte(strings.Join(out, "\r\n"))
}

// SIPPinger sends SIP OPTIONS from the PBX's port 5060 to the trunk at a fixed rate, like a
// PBX keeping its trunk alive, and records the answers with the address they say it had.
type SIPPinger struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	replies []Reply
	stop    chan struct{}
	wg      sync.WaitGroup
}

// Reply is one answer to an OPTIONS.
type Reply struct {
	At       time.Time
	Received string // the public address the trunk saw: which uplink carried it
}

var receivedRE = regexp.MustCompile(`received=([0-9.]+)`)

// readAll hands each datagram read from c to got until c is closed; read errors (the ICMP
// errors of a dead line) are skipped.
func readAll(c *net.UDPConn, got func([]byte)) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		got(buf[:n])
	}
}

// StartSIPPinger sends an OPTIONS every period, for at most max.
func StartSIPPinger(l *lab.Lab, period, max time.Duration) (*SIPPinger, error) {
	c, err := l.DialUDP(lab.HostPBX, lab.PBX4+":5060", lab.Trunk4+":5060")
	if err != nil {
		return nil, err
	}
	p := &SIPPinger{conn: c, stop: make(chan struct{})}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		readAll(c, func(b []byte) {
			if m := receivedRE.FindSubmatch(b); m != nil {
				p.mu.Lock()
				p.replies = append(p.replies, Reply{time.Now(), string(m[1])})
				p.mu.Unlock()
			}
		})
	}()
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		end := time.After(max)
		for i := 1; ; i++ {
			msg := fmt.Sprintf("OPTIONS sip:%s:5060 SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK-%d;rport\r\nMax-Forwards: 70\r\n"+
				"From: <sip:pbx@%s>;tag=wanlab\r\nTo: <sip:%s>\r\nCall-ID: wanlab-%d@%s\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n",
				lab.Trunk4, lab.PBX4, i, lab.PBX4, lab.Trunk4, i, lab.PBX4, i)
			_, _ = c.Write([]byte(msg))
			select {
			case <-p.stop:
				return
			case <-end:
				return
			case <-tick.C:
			}
		}
	}()
	return p, nil
}

// FirstFrom is the time of the first reply after t that came through addr.
func (p *SIPPinger) FirstFrom(addr string, after time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.replies {
		if r.Received == addr && r.At.After(after) {
			return r.At, true
		}
	}
	return time.Time{}, false
}

// Close stops the pinger.
func (p *SIPPinger) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.conn.Close()
	p.wg.Wait()
}

// Registrant is the PBX registering with the trunk from its own port (not 5060, which the
// SIPPinger uses) every interval, asking for that expiry, and receiving the trunk's inbound
// INVITEs on the same port.
type Registrant struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	invites []time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
}

// StartRegistrant registers from the PBX's port 5062 to the trunk now and every interval.
func StartRegistrant(l *lab.Lab, interval time.Duration) (*Registrant, error) {
	c, err := l.DialUDP(lab.HostPBX, lab.PBX4+":5062", lab.Trunk4+":5060")
	if err != nil {
		return nil, err
	}
	r := &Registrant{conn: c, stop: make(chan struct{})}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		readAll(c, func(b []byte) {
			if bytes.HasPrefix(b, []byte("INVITE ")) {
				r.mu.Lock()
				r.invites = append(r.invites, time.Now())
				r.mu.Unlock()
			}
		})
	}()
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		secs := int(interval / time.Second)
		for i := 1; ; i++ {
			msg := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:5062;branch=z9hG4bK-reg%d;rport\r\nMax-Forwards: 70\r\n"+
				"From: <sip:office@%s>;tag=reg\r\nTo: <sip:office@%s>\r\nCall-ID: wanlab-reg@%s\r\nCSeq: %d REGISTER\r\n"+
				"Contact: <sip:office@%s:5062>\r\nExpires: %d\r\nContent-Length: 0\r\n\r\n",
				lab.Trunk4, lab.PBX4, i, lab.Trunk4, lab.Trunk4, lab.PBX4, i, lab.PBX4, secs)
			_, _ = c.Write([]byte(msg))
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return r, nil
}

// FirstInvite is the arrival of the first INVITE after t.
func (r *Registrant) FirstInvite(after time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, at := range r.invites {
		if at.After(after) {
			return at, true
		}
	}
	return time.Time{}, false
}

// WaitInvite waits up to d for the first inbound INVITE after a time, and returns when it
// reached the PBX.
func (r *Registrant) WaitInvite(after time.Time, d time.Duration) (time.Time, error) {
	deadline := time.Now().Add(d)
	for {
		if at, ok := r.FirstInvite(after); ok {
			return at, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no inbound INVITE reached the PBX within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close stops registering.
func (r *Registrant) Close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.conn.Close()
	r.wg.Wait()
}
