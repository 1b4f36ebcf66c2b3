// Package dnslab runs the ISPs' resolvers (unbound) in the namespace lab and asks the box with dig, for the dnsfwd tests and the DNS failover benchmark.
package dnslab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
)

// What the ISPs' resolvers answer. Name has another address at each ISP, so an answer says
// which line's resolver it came from.
const (
	Name        = "www.isp.example"
	FTTCAnswer  = "192.0.2.80"
	LTEAnswer   = "192.0.2.81"
	RebindName  = "evil.isp.example" // a public name answering with the phone's LAN address
	RebindAddr  = lab.Phone4
	AllowedName = "nas.corp.example" // a private answer the config allows (rebind_allow)
	AllowedAddr = "10.1.2.3"
	NTPName     = "ntp.isp.example" // the lab's NTP server (chronyd on Probe4), by name
	BenchZone   = "bench.example"   // every name below it answers BenchAddr for 300 s: benchmarks' names
	BenchAddr   = "192.0.2.99"
	Domain      = "office.internal"
)

// FTTCResolver and LTEResolver are the ISPs' resolvers, on their side of the access links.
const (
	FTTCResolver = lab.FTTCGW4
	LTEResolver  = lab.LTEGW4
)

// Config is the lab's appliance config with [dns] (each uplink's ISP resolver) and [time]
// (the lab's NTP server by name; never the machine's clock) sections, and [wan] lines.
func Config(wanLines ...string) []byte {
	base := labSections.ReplaceAll(sitelab.Config(wanLines...), nil) // the lab's own [dns] and [time] give way
	return append(base, []byte(`
[dns]
domain = "`+Domain+`"
rebind_allow = ["corp.example"]

[dns.resolvers]
primary = ["`+FTTCResolver+`"]
backup = ["`+LTEResolver+`"]

[time]
servers = ["`+NTPName+`"]
set_clock = false
interval = "16s"
`)...)
}

var labSections = regexp.MustCompile(`(?m)^\[(?:time|dns|dns\.resolvers)\]\n(?:[^\[\n].*\n|\n)*`)

// Resolvers starts chronyd on the internet (Probe4, the NTP server NTPName names) and an
// unbound in each ISP namespace that answers its own customers only
// (as ISPs' resolvers do: the FTTC one refuses the LTE line's address and the other way
// round) with a local zone; dir keeps their configs. For sitelab.Start's setup.
func Resolvers(dir string) func(*sitelab.Site) error {
	return func(s *sitelab.Site) error {
		if err := Chrony(s.Lab, filepath.Join(dir, "chrony"), lab.HostNet, lab.Probe4); err != nil {
			return err
		}
		for _, r := range []struct{ host, addr, customers, answer string }{
			{lab.HostFTTC, FTTCResolver, lab.FTTCNet4, FTTCAnswer},
			{lab.HostLTE, LTEResolver, lab.LTENet4, LTEAnswer},
		} {
			if err := startUnbound(s.Lab, filepath.Join(dir, r.host), r.host, r.addr, r.customers, r.answer); err != nil {
				return err
			}
		}
		return nil
	}
}

func startUnbound(l *lab.Lab, dir, host, addr, customers, answer string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(dir, "unbound.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`server:
	interface: %[1]s
	port: 53
	do-daemonize: no
	username: ""
	chroot: ""
	directory: "%[2]s"
	pidfile: "%[2]s/unbound.pid"
	use-syslog: no
	logfile: ""
	verbosity: 1
	do-ip6: no
	module-config: "iterator"
	access-control: 0.0.0.0/0 refuse
	access-control: %[3]s allow
	local-zone: "isp.example." static
	local-data: "%[4]s. 30 IN A %[5]s"
	local-data: "%[6]s. 30 IN A %[7]s"
	local-data: "%[8]s. 30 IN A %[9]s"
	local-zone: "corp.example." static
	local-data: "%[10]s. 30 IN A %[11]s"
	local-zone: "%[12]s." redirect
	local-data: "%[12]s. 300 IN A %[13]s"
remote-control:
	control-enable: no
`, addr, dir, customers, Name, answer, RebindName, RebindAddr, NTPName, lab.Probe4, AllowedName, AllowedAddr, BenchZone, BenchAddr)), 0o644)
	if err != nil {
		return err
	}
	cmd, err := l.Start(host, "unbound", "-d", "-c", conf)
	if err != nil {
		return fmt.Errorf("dnslab: unbound in %s: %w", host, err)
	}
	// Ready when it answers its own address (inside its customers' network).
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := Dig(l, host, addr, Name)
		if err == nil && out == answer {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dnslab: unbound in %s does not answer: %v %q\n%s", host, err, out, l.Output(cmd))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Chrony runs chronyd in host serving its local clock at stratum 8 on addr, until the lab
// closes; dir keeps its config. -x: it never touches the clock (namespaces do not isolate
// time, and the machine's clock is not the test's).
func Chrony(l *lab.Lab, dir, host, addr string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(dir, "chrony.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf("local stratum 8\nallow all\nbindaddress %s\nport 123\ncmdport 0\npidfile %s\n",
		addr, filepath.Join(dir, "chronyd.pid"))), 0o644)
	if err != nil {
		return err
	}
	if _, err := l.Start(host, "chronyd", "-d", "-x", "-u", "root", "-f", conf); err != nil {
		return fmt.Errorf("dnslab: chronyd: %w", err)
	}
	return nil
}

// Dig asks server (port 53) from host: one try, one second. It returns dig's +short output,
// trimmed; an error when no answer came at all.
func Dig(l *lab.Lab, host, server string, args ...string) (string, error) {
	a := append([]string{"dig", "@" + server, "+short", "+time=1", "+tries=1"}, args...)
	out, err := l.Run(host, a...)
	out = strings.TrimSpace(out)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, fmt.Errorf("dig %s: exit %d: %s", strings.Join(args, " "), ee.ExitCode(), out)
	}
	return out, err
}

// Status is the status line of dig's full answer ("NOERROR", "REFUSED", "NXDOMAIN"...).
func Status(l *lab.Lab, host, server string, args ...string) (string, error) {
	a := append([]string{"dig", "@" + server, "+time=1", "+tries=1"}, args...)
	out, err := l.Run(host, a...)
	if err != nil {
		return "", fmt.Errorf("dig %s: %w: %s", strings.Join(args, " "), err, out)
	}
	_, rest, ok := strings.Cut(out, "status: ")
	if !ok {
		return "", fmt.Errorf("dig %s: no status in %s", strings.Join(args, " "), out)
	}
	st, _, _ := strings.Cut(rest, ",")
	return st, nil
}
