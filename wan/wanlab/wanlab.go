// Package wanlab drives failover scenarios in the namespace lab, for the wan tests and the failover benchmark.
package wanlab

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/wan"
)

// Probe targets of the lab: ICMP and TCP to Probe4 (a TCP refusal proves the path) and DNS to
// a responder this package runs on Probe4Alt, in another network.
var Targets = []string{"icmp:" + lab.Probe4, "tcp:" + lab.Probe4 + ":80", "dns:" + lab.Probe4Alt + ":53"}

// Uplink addresses of the box, by role.
var Addr = map[wan.Role]string{wan.Primary: lab.BoxWAN4, wan.Backup: lab.BoxLTE4}

// BuildDaemon builds the appliance binary into dir.
func BuildDaemon(dir string) (string, error) {
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("wanlab: go env GOMOD: %w", err)
	}
	bin := filepath.Join(dir, "appliance")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/appliance")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("wanlab: build appliance: %w: %s", err, out)
	}
	return bin, nil
}

// Site is a lab with the appliance daemon running in its box, a SIP trunk and a DNS probe
// target on the internet side.
type Site struct {
	Lab     *lab.Lab
	Control string
	Daemon  *exec.Cmd
	DNS     *DNSServer
	Trunk   *SIPServer
	dir     string
	args    []string // the daemon's command line, for Restart
}

// Config is the lab's appliance config with the trunk's OPTIONS check and [wan] settings
// (lines like `stability = "2s"`) added.
func Config(wanLines ...string) []byte { return ConfigTargets(Targets, wanLines...) }

// ConfigTargets is Config with other probe targets.
func ConfigTargets(targets []string, wanLines ...string) []byte {
	// The lab's own [wan] section gives way to the test's.
	base := wanSection.ReplaceAllString(string(lab.Config), "")
	c := strings.Replace(base, `networks = ["192.0.2.10", "2001:db8:1::10"]`,
		`networks = ["192.0.2.10", "2001:db8:1::10"]`+"\noptions = \""+lab.Trunk4+":5060\"", 1)
	q := make([]string, len(targets))
	for i, t := range targets {
		q[i] = `"` + t + `"`
	}
	c += "\n[wan]\ntargets = [" + strings.Join(q, ", ") + "]\n" + strings.Join(wanLines, "\n") + "\n"
	return []byte(c)
}

// Start builds a lab named prefix, starts the DNS target and the trunk, and runs bin (the
// appliance) in the box with config, waiting for "appliance running" and for both uplinks to
// be up.
func Start(prefix, bin, dir string, config []byte, setup ...func(*Site) error) (*Site, error) {
	l, err := lab.New(prefix)
	if err != nil {
		return nil, err
	}
	s := &Site{Lab: l, dir: dir, Control: filepath.Join(dir, "control.sock")}
	fail := func(err error) (*Site, error) { return nil, errors.Join(err, s.Close()) }
	if s.DNS, err = StartDNS(l, lab.HostNet, lab.Probe4Alt+":53"); err != nil {
		return fail(err)
	}
	if s.Trunk, err = StartSIPServer(l, lab.HostTrunk, lab.Trunk4+":5060"); err != nil {
		return fail(err)
	}
	for _, f := range setup {
		if err := f(s); err != nil {
			return fail(err)
		}
	}
	cfg := filepath.Join(dir, "appliance.toml")
	if err := os.WriteFile(cfg, config, 0o600); err != nil {
		return fail(err)
	}
	s.args = []string{bin, "run", "--config", cfg, "--state", s.StateDir(), "--control", s.Control}
	if err := s.startDaemon(); err != nil {
		return fail(err)
	}
	return s, nil
}

// StateDir is the daemon's state directory.
func (s *Site) StateDir() string { return filepath.Join(s.dir, "state") }

func (s *Site) startDaemon() error {
	var err error
	if s.Daemon, err = s.Lab.Start(lab.HostBox, s.args...); err != nil {
		return err
	}
	if err := s.WaitOutput("appliance running", 20*time.Second); err != nil {
		return err
	}
	_, err = s.WaitStatus(15*time.Second, "both uplinks up", func(st wan.Status) bool {
		return len(st.Uplinks) == 2 && st.Uplinks[0].State == wan.Up && st.Uplinks[1].State == wan.Up
	})
	return err
}

// Restart stops the daemon cleanly (SIGTERM) and starts it again with the same state.
func (s *Site) Restart() error {
	if err := s.Lab.Stop(s.Daemon); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return err
		}
	}
	return s.startDaemon()
}

// RemakeLink deletes the box's link to the ISP of uplink r and makes it again, as a USB
// modem does when it re-enumerates: the box sees the link go and come back with a new index
// and no addresses. The ISP side gets its gateway address (and the extra ones in gws) again.
func (s *Site) RemakeLink(r wan.Role, gws ...string) error {
	dev := map[wan.Role]string{wan.Primary: lab.BoxWANIf, wan.Backup: lab.BoxLTEIf}[r]
	if _, err := s.Lab.Run(lab.HostBox, "ip", "link", "del", dev); err != nil {
		return err
	}
	cmds := [][]string{
		{"ip", "link", "add", dev, "netns", s.Lab.NS(lab.HostBox), "type", "veth", "peer", "name", "cust0", "netns", s.Lab.NS(isp(r))},
		{"ip", "-n", s.Lab.NS(isp(r)), "link", "set", "cust0", "up"},
		{"ip", "-n", s.Lab.NS(lab.HostBox), "link", "set", dev, "up"},
	}
	for _, gw := range gws {
		cmds = append(cmds, []string{"ip", "-n", s.Lab.NS(isp(r)), "addr", "add", gw, "dev", "cust0"})
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("wanlab: %s: %w: %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// Close stops everything and removes the lab.
func (s *Site) Close() error {
	var errs []error
	if s.DNS != nil {
		s.DNS.Close()
	}
	if s.Trunk != nil {
		s.Trunk.Close()
	}
	if s.Lab != nil {
		errs = append(errs, s.Lab.Close())
	}
	return errors.Join(errs...)
}

// Log is what the daemon has written.
func (s *Site) Log() string { return s.Lab.Output(s.Daemon) }

// WaitOutput waits until the daemon's output contains want.
func (s *Site) WaitOutput(want string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !strings.Contains(s.Log(), want) {
		if time.Now().After(deadline) {
			return fmt.Errorf("wanlab: daemon did not say %q within %s; it said:\n%s", want, d, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Status asks the daemon over its control socket.
func (s *Site) Status() (wan.Status, error) {
	var st wan.Status
	b, err := daemon.Call(s.Control, "GET", "/wan/status", nil)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// WaitStatus polls the status until ok holds.
func (s *Site) WaitStatus(d time.Duration, what string, ok func(wan.Status) bool) (wan.Status, error) {
	deadline := time.Now().Add(d)
	for {
		st, err := s.Status()
		if err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			st.WriteText(&b)
			return st, fmt.Errorf("wanlab: not %s within %s (last error %v); status:\n%s\ndaemon log:\n%s", what, d, err, b.String(), tail(s.Log(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Uplink returns the status of one uplink.
func Uplink(st wan.Status, r wan.Role) wan.UplinkStatus {
	for _, u := range st.Uplinks {
		if u.Role == r {
			return u
		}
	}
	return wan.UplinkStatus{}
}

// Faults, run in the ISPs' namespaces.

// Carrier sets the ISP side of an uplink down or up: the box sees its carrier go.
func (s *Site) Carrier(r wan.Role, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := s.Lab.Run(isp(r), "ip", "link", "set", "cust0", state)
	return err
}

func isp(r wan.Role) string {
	if r == wan.Primary {
		return lab.HostFTTC
	}
	return lab.HostLTE
}

// Silent makes an ISP drop everything (the link stays up) or stop doing so.
func (s *Site) Silent(r wan.Role, on bool) error {
	if !on {
		_, err := s.Lab.Run(isp(r), "nft", "delete", "table", "inet", "wanfault")
		return err
	}
	return s.nft(isp(r), `table inet wanfault {
	chain pre { type filter hook prerouting priority -300; policy drop; }
	chain out { type filter hook output priority -300; policy drop; }
}`)
}

// DropTarget makes one target address stop answering ICMP (on the internet side) or answer
// again.
func (s *Site) DropICMP(addr string, on bool) error {
	if !on {
		_, err := s.Lab.Run(lab.HostNet, "nft", "delete", "table", "inet", "wantarget")
		return err
	}
	return s.nft(lab.HostNet, `table inet wantarget {
	chain in { type filter hook input priority 0; ip daddr `+addr+` ip protocol icmp drop; }
}`)
}

func (s *Site) nft(host, ruleset string) error {
	cmd := s.Lab.Command(host, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("wanlab: nft in %s: %w: %s", host, err, out)
	}
	return nil
}

// Force sets the manual override through the control API.
func (s *Site) Force(m wan.Mode) error {
	_, err := daemon.Call(s.Control, "POST", "/wan/force", strings.NewReader(string(m)))
	return err
}

// StaleFlows counts conntrack entries of office (LAN) flows still masqueraded to the
// uplink address addr, as `conntrack -L` in the box shows them.
func (s *Site) StaleFlows(addr string) (int, string, error) {
	out, err := s.Lab.Command(lab.HostBox, "conntrack", "-L", "-f", "ipv4", "-q", addr).Output()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return 0, "", fmt.Errorf("wanlab: conntrack: %w", err)
		}
	}
	n, stale := 0, ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "src=192.168.50.") {
			n++
			stale += line + "\n"
		}
	}
	return n, stale, nil
}

// Event finds the first wan event of kind at or after t.
func Event(st wan.Status, kind string, after time.Time) (time.Time, bool) {
	for _, e := range st.Events {
		if e.Kind == kind && !e.Time.Before(after) {
			return e.Time, true
		}
	}
	return time.Time{}, false
}

// Stream is a steady UDP stream from the phone to the trunk (like RTP), with a fixed
// source port so that it is one long-lived conntrack entry.
type Stream struct {
	Rate int // packets per second
	recv *net.UDPConn
	send *net.UDPConn
	mu   sync.Mutex
	got  []Arrival
	seq  uint32
	stop chan struct{}
	wg   sync.WaitGroup
}

// Arrival is one packet the far end received.
type Arrival struct {
	Seq  uint32
	At   time.Time
	From string // the uplink address it came from (after the box's masquerade)
}

// StartStream sends rate packets a second until Close, for at most max.
func StartStream(l *lab.Lab, rate int, max time.Duration) (*Stream, error) {
	recv, err := l.ListenUDP(lab.HostTrunk, lab.Trunk4+":40000")
	if err != nil {
		return nil, err
	}
	send, err := l.DialUDP(lab.HostPhone, lab.Phone4+":40000", lab.Trunk4+":40000")
	if err != nil {
		recv.Close()
		return nil, err
	}
	st := &Stream{Rate: rate, recv: recv, send: send, stop: make(chan struct{})}
	st.wg.Add(2)
	go func() {
		defer st.wg.Done()
		buf := make([]byte, 64)
		for {
			n, from, err := recv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				st.mu.Lock()
				st.got = append(st.got, Arrival{binary.BigEndian.Uint32(buf), time.Now(), from.IP.String()})
				st.mu.Unlock()
			}
		}
	}()
	go func() {
		defer st.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		end := time.After(max)
		buf := make([]byte, 160) // a G.711 20 ms frame
		for {
			select {
			case <-st.stop:
				return
			case <-end:
				return
			case <-tick.C:
				st.mu.Lock()
				st.seq++
				binary.BigEndian.PutUint32(buf, st.seq)
				st.mu.Unlock()
				_, _ = send.Write(buf) // errors (no route for a moment) are losses
			}
		}
	}()
	return st, nil
}

// Sent is the last sequence number sent.
func (st *Stream) Sent() uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.seq
}

// ArrivedFromSince counts packets from addr with sequence numbers above seq.
func (st *Stream) ArrivedFromSince(addr string, seq uint32) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for _, a := range st.got {
		if a.Seq > seq && a.From == addr {
			n++
		}
	}
	return n
}

// Lost counts the packets numbered (from, to] that never arrived.
func (st *Stream) Lost(from, to uint32) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	seen := map[uint32]bool{}
	for _, a := range st.got {
		if a.Seq > from && a.Seq <= to {
			seen[a.Seq] = true
		}
	}
	return int(to-from) - len(seen)
}

// Close stops the stream.
func (st *Stream) Close() {
	select {
	case <-st.stop:
	default:
		close(st.stop)
	}
	st.send.Close()
	st.recv.Close()
	st.wg.Wait()
}

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
		return errors.New("wanlab: no registration yet")
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

var wanSection = regexp.MustCompile(`(?m)^\[wan\]\n(?:[^\[\n].*\n|\n)*`)

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
		return nil, fmt.Errorf("wanlab: dhcp server: %w", err)
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

// Noise makes an ISP drop pct % of the packets it forwards, at random, both ways (this
// kernel has no netem), or stop doing so.
func (s *Site) Noise(r wan.Role, pct int) error {
	if pct == 0 {
		_, err := s.Lab.Run(isp(r), "nft", "delete", "table", "inet", "wannoise")
		return err
	}
	return s.nft(isp(r), fmt.Sprintf(`table inet wannoise {
	chain drop_some { type filter hook forward priority -300; policy accept; numgen random mod 100 < %d drop; }
}`, pct))
}

// TargetTrouble makes one probe target dead (the DNS responder on Probe4Alt stops being
// reachable) and another rate-limit ICMP (echo requests to Probe4 above perSecond from one
// source address are dropped, as public resolvers do per client), on the internet side, for
// both uplinks; or undoes both.
func (s *Site) TargetTrouble(on bool, perSecond int) error {
	if !on {
		_, err := s.Lab.Run(lab.HostNet, "nft", "delete", "table", "inet", "wantrouble")
		return err
	}
	return s.nft(lab.HostNet, fmt.Sprintf(`table inet wantrouble {
	set icmp_clients { type ipv4_addr; flags dynamic; timeout 1m; size 1024; }
	chain in {
		type filter hook input priority 0; policy accept;
		ip daddr %s udp dport 53 drop
		ip daddr %s icmp type echo-request update @icmp_clients { ip saddr limit rate %d/second burst 1 packets } accept
		ip daddr %s icmp type echo-request drop
	}
}`, lab.Probe4Alt, lab.Probe4, perSecond, lab.Probe4))
}

// Meter counts the IPv4 bytes an ISP forwards to and from the box's address on its line.
type Meter struct {
	s    *Site
	host string
}

// StartMeter starts counting (from zero) on the ISP of uplink r.
func (s *Site) StartMeter(r wan.Role) (*Meter, error) {
	m := &Meter{s: s, host: isp(r)}
	_, _ = s.Lab.Run(m.host, "nft", "delete", "table", "inet", "wanmeter")
	err := s.nft(m.host, fmt.Sprintf(`table inet wanmeter {
	chain count {
		type filter hook forward priority -310; policy accept;
		ip saddr %s counter
		ip daddr %s counter
	}
}`, Addr[r], Addr[r]))
	return m, err
}

var bytesRE = regexp.MustCompile(`counter packets \d+ bytes (\d+)`)

// Bytes is the count so far, both ways.
func (m *Meter) Bytes() (int64, error) {
	out, err := m.s.Lab.Run(m.host, "nft", "list", "table", "inet", "wanmeter")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, g := range bytesRE.FindAllStringSubmatch(out, -1) {
		var b int64
		fmt.Sscan(g[1], &b)
		n += b
	}
	return n, nil
}

// BCP38 makes the ISP of uplink r drop (and count) packets from the box whose source is not
// the line's own address, as ISPs that filter spoofed sources do; or stop doing so.
func (s *Site) BCP38(r wan.Role, on bool) error {
	if !on {
		_, err := s.Lab.Run(isp(r), "nft", "delete", "table", "inet", "bcp38")
		return err
	}
	return s.nft(isp(r), fmt.Sprintf(`table inet bcp38 {
	chain filter {
		type filter hook forward priority 0; policy accept;
		iifname "cust0" meta nfproto ipv4 ip saddr != %s counter drop
	}
}`, Addr[r]))
}

// Spoofed is the number of packets the BCP38 filter of uplink r's ISP dropped.
func (s *Site) Spoofed(r wan.Role) (int64, error) {
	out, err := s.Lab.Run(isp(r), "nft", "list", "table", "inet", "bcp38")
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wanlab: no bcp38 counter in %s", isp(r))
	}
	var n int64
	fmt.Sscan(m[1], &n)
	return n, nil
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
