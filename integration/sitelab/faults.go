package sitelab

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/wan"
)

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
		return fmt.Errorf("sitelab: nft in %s: %w: %s", host, err, out)
	}
	return nil
}

// StaleFlows counts conntrack entries of office (LAN) flows still masqueraded to the
// uplink address addr, as `conntrack -L` in the box shows them.
func (s *Site) StaleFlows(addr string) (int, string, error) {
	out, err := s.Lab.Command(lab.HostBox, "conntrack", "-L", "-f", "ipv4", "-q", addr).Output()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return 0, "", fmt.Errorf("sitelab: conntrack: %w", err)
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
		return 0, fmt.Errorf("sitelab: no bcp38 counter in %s", isp(r))
	}
	var n int64
	fmt.Sscan(m[1], &n)
	return n, nil
}
