// Command bench-lan-flood floods the real appliance's DHCP server from a LAN host in the namespace lab (root only), and measures what it costs and who is still served.
//
// It runs the appliance (with [dhcp] on) in a lab's box and, for each kind of flood
// (REQUESTs from one MAC, DECLINEs, 200 made-up MACs), sends it as fast as it can from one
// LAN host for -duration while another LAN host renews its lease and asks the box's DNS
// for its own name once a second. It prints `name value` lines: the daemon's RSS peak, the
// legitimate client's answers, the lease file's writes and the daemon's log lines.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/miekg/dns"

	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/dhcpd/dhcptest"
	"github.com/officeedge/appliance/internal/lab"
)

const dhcpSection = `
[dhcp]
enabled = true
pool = "192.168.50.100-192.168.50.199"
check_interval = "10s"

[dhcp.static.deskphone]
mac = "80:5e:c0:00:00:21"
address = "192.168.50.21"
`

var (
	poolFirst = netip.MustParseAddr("192.168.50.100")
	poolLast  = netip.MustParseAddr("192.168.50.199")
)

func main() {
	duration := flag.Duration("duration", time.Minute, "how long each flood lasts")
	pps := flag.Int("pps", 0, "flood packets a second (0: as fast as one sender goes)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("bench-lan-flood needs root (network namespaces)")
	}
	if err := run(*duration, *pps); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-lan-flood:", msg)
	os.Exit(1)
}

func run(duration time.Duration, pps int) error {
	dir, bin, done, err := build.TempDaemon("bench-lan-flood")
	if err != nil {
		return err
	}
	defer done()
	s, err := sitelab.Start(fmt.Sprintf("lf%04x", os.Getpid()&0xffff), bin, dir, append(sitelab.Config(), dhcpSection...))
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.WaitOutput("dhcp server serving", 30*time.Second); err != nil {
		return err
	}
	l := s.Lab
	for _, h := range []struct{ name, mac string }{{"legit", "02:00:00:00:80:01"}, {"bad", "02:00:00:00:80:66"}} {
		if err := l.AddLANHost(h.name, h.mac); err != nil {
			return err
		}
	}
	c, err := newLegit(l)
	if err != nil {
		return fmt.Errorf("the legitimate client: %w\ndaemon log:\n%s", err, s.Log())
	}
	defer c.close()
	fl, err := dhcptest.NewFlooder(l, "bad", "eth0", lab.BoxLAN4, poolFirst, poolLast)
	if err != nil {
		return err
	}
	defer fl.Close()
	pid := s.Daemon.Process.Pid
	base, err := rssMB(pid)
	if err != nil {
		return err
	}
	fmt.Printf("lan_flood_rss_before_mb %.0f\n", base)
	var peak float64
	var dhcpOK, dnsOK, asked int
	for _, kind := range dhcptest.Kinds {
		r, err := flood(s, c, fl, kind, duration, pps, pid)
		if err != nil {
			return fmt.Errorf("%s flood: %w\ndaemon log:\n%s", kind, err, tail(s.Log(), 40))
		}
		p := "lan_flood_" + string(kind)
		fmt.Printf("%s_sent_pps %.0f\n", p, float64(r.sent)/duration.Seconds())
		fmt.Printf("%s_rss_peak_mb %.0f\n", p, r.peak)
		fmt.Printf("%s_legit_dhcp_answered %d/%d\n", p, r.dhcpOK, r.asked)
		fmt.Printf("%s_legit_dns_answered %d/%d\n", p, r.dnsOK, r.asked)
		fmt.Printf("%s_legit_dhcp_retries %d\n", p, r.retries)
		fmt.Printf("%s_lease_writes %d\n", p, r.writes)
		fmt.Printf("%s_log_lines %d\n", p, r.logLines)
		fmt.Printf("%s_box_udp_rcvbuf_errors %d\n", p, r.rcvbufErrors)
		peak = max(peak, r.peak)
		dhcpOK, dnsOK, asked = dhcpOK+r.dhcpOK, dnsOK+r.dnsOK, asked+r.asked
	}
	fmt.Printf("lan_flood_rss_peak_mb %.0f\n", peak)
	fmt.Printf("lan_flood_legit_dhcp_answered %d/%d\n", dhcpOK, asked)
	fmt.Printf("lan_flood_legit_dns_answered %d/%d\n", dnsOK, asked)
	return nil
}

type result struct {
	sent                         uint64
	peak                         float64
	asked, dhcpOK, dnsOK, writes int
	logLines, rcvbufErrors       int
	retries                      int
}

// flood sends kind for d while the legitimate client renews and asks DNS once a second,
// sampling the daemon's RSS and the lease file's modification time.
func flood(s *sitelab.Site, c *legit, fl *dhcptest.Flooder, kind dhcptest.Kind, d time.Duration, pps, pid int) (result, error) {
	var r result
	logBefore := strings.Count(s.Log(), "\n")
	rcvBefore, err := udpRcvbufErrors(s.Lab)
	if err != nil {
		return r, err
	}
	sentBefore := fl.Sent()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var floodErr error
	wg.Add(2)
	go func() { defer wg.Done(); floodErr = fl.Run(ctx, kind, pps) }()
	var mu sync.Mutex
	go func() { // samplers: RSS every 100 ms, the lease file's writes (at most one a second)
		defer wg.Done()
		leases := s.StateDir() + "/dhcp-leases.json"
		var last time.Time
		if st, err := os.Stat(leases); err == nil {
			last = st.ModTime()
		}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			m, err := rssMB(pid)
			mu.Lock()
			if err == nil {
				r.peak = max(r.peak, m)
			}
			if st, err := os.Stat(leases); err == nil && !st.ModTime().Equal(last) {
				last = st.ModTime()
				r.writes++
			}
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(time.Second)
	for ctx.Err() == nil {
		dhcpOK, dnsOK, retries := c.round(context.Background()) // the last round runs to its end
		mu.Lock()
		r.asked++
		r.retries += retries
		if dhcpOK {
			r.dhcpOK++
		}
		if dnsOK {
			r.dnsOK++
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	tick.Stop()
	wg.Wait()
	r.sent = fl.Sent() - sentBefore
	r.logLines = strings.Count(s.Log(), "\n") - logBefore
	rcv, err := udpRcvbufErrors(s.Lab)
	r.rcvbufErrors = rcv - rcvBefore
	return r, errors.Join(floodErr, err)
}

// legit is an office PC: it has a lease, renews it, and asks the box for its own name. It
// renews over a UDP socket on port 68, as a PC with an address does: the kernel hands it
// the box's answers only, not the flood's broadcasts (a raw socket would see them all).
type legit struct {
	ack  *dhcpv4.DHCPv4
	dhcp net.PacketConn
	dns  *net.UDPConn
	ip   net.IP
}

const legitName = "legit-pc"

func newLegit(l *lab.Lab) (*legit, error) {
	c := &legit{}
	var first *nclient4.Client
	err := l.Do("legit", func() error {
		var err error
		first, err = nclient4.New("eth0", nclient4.WithTimeout(time.Second), nclient4.WithRetry(5))
		return err
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lease, err := first.Request(ctx, dhcpv4.WithOption(dhcpv4.OptHostName(legitName)))
	first.Close()
	if err != nil {
		return nil, fmt.Errorf("first lease: %w", err)
	}
	c.ack, c.ip = lease.ACK, lease.ACK.YourIPAddr
	if _, err := l.Run("legit", "ip", "addr", "add", c.ip.String()+"/24", "dev", "eth0"); err != nil {
		return nil, err
	}
	err = l.Do("legit", func() error {
		var err error
		c.dhcp, err = server4.NewIPv4UDPConn("eth0", &net.UDPAddr{Port: dhcpv4.ClientPort})
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.dns, err = l.DialUDP("legit", "", lab.BoxLAN4+":53"); err != nil {
		return nil, err
	}
	return c, nil
}

// round renews the lease (a REQUEST to the box, tried twice, a second each) and asks DNS for
// the client's own name; each true when answered right, and the REQUESTs sent again.
func (c *legit) round(ctx context.Context) (dhcpOK, dnsOK bool, retries int) {
	for try := 0; try < 2 && !dhcpOK && ctx.Err() == nil; try++ {
		retries = try
		dhcpOK = c.renew()
	}
	m := new(dns.Msg)
	m.SetQuestion(legitName+".office.internal.", dns.TypeA)
	dc := &dns.Client{Timeout: 2 * time.Second}
	if in, _, err := dc.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: c.dns}); err == nil && len(in.Answer) == 1 {
		if a, ok := in.Answer[0].(*dns.A); ok && a.A.Equal(c.ip) {
			dnsOK = true
		}
	}
	return dhcpOK, dnsOK, retries
}

func (c *legit) renew() bool {
	req, err := dhcpv4.NewRenewFromAck(c.ack, dhcpv4.WithOption(dhcpv4.OptHostName(legitName)))
	if err != nil {
		return false
	}
	if _, err := c.dhcp.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.ParseIP(lab.BoxLAN4), Port: dhcpv4.ServerPort}); err != nil {
		return false
	}
	deadline := time.Now().Add(time.Second)
	_ = c.dhcp.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		n, _, err := c.dhcp.ReadFrom(buf)
		if err != nil {
			return false
		}
		ack, err := dhcpv4.FromBytes(buf[:n])
		if err == nil && ack.TransactionID == req.TransactionID && ack.MessageType() == dhcpv4.MessageTypeAck && ack.YourIPAddr.Equal(c.ip) {
			c.ack = ack
			return true
		}
	}
	return false
}

func (c *legit) close() {
	if c.dhcp != nil {
		c.dhcp.Close()
	}
	if c.dns != nil {
		c.dns.Close()
	}
}

// udpRcvbufErrors is how many UDP datagrams the box's kernel dropped because a socket's
// buffer was full (the DHCP server's read loop not keeping up).
func udpRcvbufErrors(l *lab.Lab) (int, error) {
	out, err := l.Run(lab.HostBox, "cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	var head []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(f) {
				return strconv.Atoi(f[i])
			}
		}
	}
	return 0, errors.New("no Udp RcvbufErrors in /proc/net/snmp")
}

// rssMB is a process's resident memory.
func rssMB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
