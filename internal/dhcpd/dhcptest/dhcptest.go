// Package dhcptest runs real DHCP clients (ISC dhclient, busybox udhcpc) in lab hosts and reports what the server gave them.
package dhcptest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab"
)

// Tools are the clients, for labtest.RequireRoot.
var Tools = []string{"dhclient", "udhcpc"}

// Dhclient runs dhclient in host on eth0 until it has a lease, sending hostname, and returns
// what its script was given (new_ip_address, new_routers, new_tftp_server_name, ...; option
// 160 is new_polycom_url, 150 new_tftp_servers). Each run has a fresh lease file: the
// client starts with a DISCOVER, as a new device does. It is stopped once it has a lease.
func Dhclient(t testing.TB, l *lab.Lab, host, hostname string) map[string]string {
	t.Helper()
	dir := tempDir(t, "dhclient-"+host)
	out := filepath.Join(dir, "bound.env")
	script := writeScript(t, dir, `case "$reason" in BOUND|REBOOT|RENEW) env > `+out+`.tmp && mv `+out+`.tmp `+out+`;; esac`)
	cf := filepath.Join(dir, "dhclient.conf")
	conf := `option polycom-url code 160 = text;
option tftp-servers code 150 = array of ip-address;
send host-name "` + hostname + `";
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name, ntp-servers,
	tftp-server-name, polycom-url, tftp-servers, vendor-encapsulated-options;
`
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, err := l.Start(host, "dhclient", "-4", "-d", "-1", "-v", "-cf", cf, "-sf", script,
		"-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop(cmd)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if env, err := os.ReadFile(out); err == nil {
			return parseEnv(string(env))
		}
		if time.Now().After(deadline) {
			t.Fatalf("dhclient in %s got no lease:\n%s", host, l.Output(cmd))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Udhcpc runs busybox udhcpc once in host on iface, sending hostname and asking for the
// phones' options, and returns what its script was given on "bound" (ip, router, dns,
// serverid, opt160 in hex, ...), or nil when it got no lease (after about 4 seconds).
func Udhcpc(t testing.TB, l *lab.Lab, host, iface, hostname string) map[string]string {
	t.Helper()
	dir := tempDir(t, "udhcpc-"+host)
	out := filepath.Join(dir, "bound.env")
	script := writeScript(t, dir, `[ "$1" = bound ] && env > `+out+`; exit 0`)
	outp, err := l.Run(host, "udhcpc", "-i", iface, "-s", script, "-q", "-f", "-n", "-t", "4", "-T", "1",
		"-O", "66", "-O", "160", "-O", "150", "-O", "43", "-O", "ntpsrv", "-x", "hostname:"+hostname)
	env, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Logf("udhcpc in %s: no lease (%v):\n%s", host, err, outp)
		return nil
	}
	return parseEnv(string(env))
}

func tempDir(t testing.TB, name string) string {
	t.Helper()
	d, err := os.MkdirTemp(t.TempDir(), name+"-*")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeScript(t testing.TB, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func parseEnv(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.Trim(v, "'")
		}
	}
	return m
}
