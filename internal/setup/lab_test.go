package setup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/setupcode"
)

// The setup state tested whole: the real binary in a box namespace, with a LAN to a client
// namespace and an uplink to another (names unique per test: labtest.Netns).

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// appliance builds the binary once for the package's tests.
func appliance(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "su1bin"); binErr == nil {
			binPath, binErr = build.Daemon(binDir)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %v: %v: %s", ns, args, err, out)
	}
}

// inNS runs a command in ns, bounded by timeout; it returns the output and the exit code.
func inNS(ns string, timeout time.Duration, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	return string(out) + err.Error(), -1
}

// setupNet is a box with lan0 to the client's eth0, and wan0 (10.99.1.2/30) to the uplink's
// eth0 (10.99.1.1/30, with a route to the setup LAN through the box).
type setupNet struct{ box, cli, up string }

func newSetupNet(t *testing.T) setupNet {
	t.Helper()
	n := setupNet{}
	n.box, _ = labtest.Netns(t, "box")
	n.cli, _ = labtest.Netns(t, "cli")
	n.up, _ = labtest.Netns(t, "up")
	for _, ns := range []string{n.box, n.cli, n.up} {
		ipIn(t, ns, "link", "set", "lo", "up")
	}
	if out, err := exec.Command("ip", "link", "add", "lan0", "netns", n.box, "type", "veth", "peer", "name", "eth0", "netns", n.cli).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "link", "add", "wan0", "netns", n.box, "type", "veth", "peer", "name", "eth0", "netns", n.up).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	ipIn(t, n.cli, "link", "set", "eth0", "up")
	ipIn(t, n.box, "addr", "add", "10.99.1.2/30", "dev", "wan0")
	ipIn(t, n.box, "link", "set", "wan0", "up")
	ipIn(t, n.up, "addr", "add", "10.99.1.1/30", "dev", "eth0")
	ipIn(t, n.up, "link", "set", "eth0", "up")
	ipIn(t, n.up, "route", "add", "192.168.1.0/24", "via", "10.99.1.2")
	return n
}

// box is the appliance running in its namespace.
type box struct {
	cmd   *exec.Cmd
	log   *labtest.LogBuffer
	state string
	conf  string // the writable config
	sock  string
}

// startBox runs `appliance run --setup` in ns with lan as the setup LAN and no config.
func startBox(t *testing.T, ns, lan string, extra ...string) *box {
	t.Helper()
	bin := appliance(t)
	d := t.TempDir()
	b := &box{log: &labtest.LogBuffer{}, state: filepath.Join(d, "state"), conf: filepath.Join(d, "perm", "appliance.toml"),
		sock: filepath.Join(d, "control.sock")}
	bootDir := filepath.Join(d, "boot")
	if err := os.Mkdir(bootDir, 0o700); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", ns, bin, "run", "--setup", "--boot-dir", bootDir, "--setup-lan", lan,
		"--writable-config", b.conf, "--config", filepath.Join(d, "missing.toml"), "--state", b.state,
		"--control", b.sock, "--setup-console", ""}, extra...)
	b.cmd = exec.Command("ip", args...)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = b.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("appliance log:\n%s", b.log.String())
		}
	})
	return b
}

// codeLines are the setup state's announcements so far.
func (b *box) codeLines() []string {
	return regexp.MustCompile(`appliance setup: open [^;]*; setup code: [A-Z0-9-]+`).FindAllString(b.log.String(), -1)
}

// waitLog waits for what to be in the log.
func (b *box) waitLog(t *testing.T, what string, timeout time.Duration) {
	t.Helper()
	labtest.WaitFor(t, "the appliance to log "+what, timeout, func() bool { return strings.Contains(b.log.String(), what) })
}

// leaseScript is udhcpc's script: it takes the lease and says from whom.
const leaseScript = `#!/bin/sh
case "$1" in
bound|renew) ip addr add "$ip/$mask" dev "$interface"; echo "LEASE $ip FROM $serverid" ;;
esac
`

// lease runs udhcpc on dev in ns until it has a lease, and returns its address and server.
func lease(t *testing.T, ns, dev string) (addr, server string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "lease.sh")
	if err := os.WriteFile(script, []byte(leaseScript), 0o700); err != nil {
		t.Fatal(err)
	}
	out, code := inNS(ns, 45*time.Second, "udhcpc", "-f", "-q", "-n", "-i", dev, "-t", "30", "-T", "1", "-s", script)
	m := regexp.MustCompile(`LEASE (\S+) FROM (\S+)`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("udhcpc in %s on %s: exit %d:\n%s", ns, dev, code, out)
	}
	return m[1], m[2]
}

// status is GET /api/status over HTTPS from ns.
func status(ns, addr string) (map[string]any, error) {
	out, code := inNS(ns, 10*time.Second, "curl", "-sk", "-m", "5", "https://"+addr+"/api/status")
	if code != 0 {
		return nil, fmt.Errorf("curl exit %d: %s", code, out)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	return v, nil
}

// The setup state on the LAN: a PC gets an address from the box and the page over HTTPS
// (plain HTTP sends it there); from the uplink nothing answers, not even ping.
func TestSetupStateLAN(t *testing.T) {
	labtest.RequireRoot(t, "udhcpc", "curl", "ping")
	t.Parallel()
	n := newSetupNet(t)
	b := startBox(t, n.box, "lan0")
	labtest.WaitFor(t, "the setup state's announcement", 30*time.Second, func() bool { return len(b.codeLines()) > 0 })
	code, err := os.ReadFile(filepath.Join(b.state, setupcode.File))
	if err != nil {
		t.Fatal(err)
	}
	if line := b.codeLines()[0]; !strings.Contains(line, "https://192.168.1.1/") || !strings.Contains(line, setupcode.Show(strings.TrimSpace(string(code)))) {
		t.Fatalf("announcement %q", line)
	}
	addr, server := lease(t, n.cli, "eth0")
	if !strings.HasPrefix(addr, "192.168.1.1") || server != "192.168.1.1" {
		t.Fatalf("lease %s from %s: want one of 192.168.1.100-199 from the box", addr, server)
	}
	st, err := status(n.cli, "192.168.1.1")
	if err != nil || st["setup"] != true {
		t.Fatalf("/api/status from the LAN: %v %v", st, err)
	}
	if out, _ := inNS(n.cli, 10*time.Second, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://192.168.1.1/"); out != "302 https://192.168.1.1/" {
		t.Fatalf("plain HTTP: %q, want a redirect to https", out)
	}
	if out, code := inNS(n.cli, 10*time.Second, "curl", "-sk", "-m", "5", "https://192.168.1.1/"); code != 0 || !strings.Contains(out, `id="setup"`) {
		t.Fatalf("the form: exit %d:\n%.300s", code, out)
	}
	// gokrazy's port is open to the LAN: the connection is refused (nothing listens here),
	// not dropped.
	if _, code := inNS(n.cli, 10*time.Second, "curl", "-s", "-m", "3", "http://192.168.1.1:8080/"); code != 7 {
		t.Fatalf("port 8080 from the LAN: curl exit %d, want 7 (refused)", code)
	}
	// From the uplink: dropped (curl times out: 28), whatever the port or address.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for _, url := range []string{"https://10.99.1.2/", "http://10.99.1.2/", "http://10.99.1.2:8080/", "https://192.168.1.1/"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, code := inNS(n.up, 10*time.Second, "curl", "-sk", "-m", "2", url); code != 28 {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s: curl exit %d %s", url, code, out))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("the box answers from the uplink: %v", bad)
	}
	if out, code := inNS(n.up, 10*time.Second, "ping", "-c", "2", "-W", "1", "10.99.1.2"); code == 0 {
		t.Fatalf("ping from the uplink answered:\n%s", out)
	}
}

// With another DHCP server on the LAN (dnsmasq), the box serves none, takes a lease from it,
// and its page answers on the leased address too.
func TestSetupDHCPElsewhere(t *testing.T) {
	labtest.RequireRoot(t, "udhcpc", "curl", "dnsmasq", "ss")
	t.Parallel()
	boxNS, _ := labtest.Netns(t, "box")
	sw, _ := labtest.Netns(t, "sw")
	dns, _ := labtest.Netns(t, "dns")
	for _, ns := range []string{boxNS, sw, dns} {
		ipIn(t, ns, "link", "set", "lo", "up")
	}
	for _, l := range [][3]string{{"lan0", boxNS, "pbox"}, {"eth0", dns, "pdns"}} {
		if out, err := exec.Command("ip", "link", "add", l[0], "netns", l[1], "type", "veth", "peer", "name", l[2], "netns", sw).CombinedOutput(); err != nil {
			t.Fatalf("veth %v: %v: %s", l, err, out)
		}
	}
	ipIn(t, sw, "link", "add", "br0", "type", "bridge")
	for _, p := range []string{"pbox", "pdns"} {
		ipIn(t, sw, "link", "set", p, "master", "br0")
		ipIn(t, sw, "link", "set", p, "up")
	}
	ipIn(t, sw, "link", "set", "br0", "up")
	ipIn(t, dns, "addr", "add", "10.77.0.1/24", "dev", "eth0")
	ipIn(t, dns, "link", "set", "eth0", "up")
	dir := t.TempDir()
	var dlog labtest.LogBuffer
	dm := exec.Command("ip", "netns", "exec", dns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface=eth0", "--bind-interfaces", "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,2m",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"), "--log-facility=-", "--log-dhcp")
	dm.Stdout, dm.Stderr = &dlog, &dlog
	if err := dm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dm.Process.Kill(); _ = dm.Wait() })
	labtest.WaitFor(t, "dnsmasq to serve DHCP", 10*time.Second, func() bool { return strings.Contains(dlog.String(), "DHCP, IP range") })

	b := startBox(t, boxNS, "lan0")
	b.waitLog(t, "taking a lease from it", 30*time.Second)
	var boxAddr string
	labtest.WaitFor(t, "the box to take a lease from dnsmasq", 30*time.Second, func() bool {
		out, _ := inNS(boxNS, 5*time.Second, "ip", "-4", "-o", "addr", "show", "dev", "lan0")
		m := regexp.MustCompile(`inet (10\.77\.0\.\d+)/24`).FindStringSubmatch(out)
		if m != nil {
			boxAddr = m[1]
		}
		return m != nil
	})
	labtest.WaitFor(t, "the announcement with the leased address", 10*time.Second, func() bool {
		ls := b.codeLines()
		return len(ls) > 0 && strings.Contains(ls[len(ls)-1], "https://"+boxAddr+"/")
	})
	addr, server := lease(t, sw, "br0")
	if server != "10.77.0.1" || !strings.HasPrefix(addr, "10.77.0.") {
		t.Fatalf("a PC's lease: %s from %s, want one from dnsmasq", addr, server)
	}
	if out, _ := inNS(boxNS, 5*time.Second, "ss", "-Hauln", "sport = :67"); strings.TrimSpace(out) != "" {
		t.Fatalf("the box listens for DHCP beside dnsmasq:\n%s", out)
	}
	if st, err := status(sw, boxAddr); err != nil || st["setup"] != true {
		t.Fatalf("/api/status on the leased address: %v %v", st, err)
	}
}

// The whole loop: the setup page's form writes the first config, the daemon runs from it
// (its control socket answers), and, not confirmed in time, the config goes into the
// history and the box is back in the setup state with the same code.
func TestSetupApplyAndRevert(t *testing.T) {
	labtest.RequireRoot(t, "curl")
	t.Parallel()
	n := newSetupNet(t)
	b := startBox(t, n.box, "lan0", "--confirm-window", "8s")
	labtest.WaitFor(t, "the setup state's announcement", 30*time.Second, func() bool { return len(b.codeLines()) > 0 })
	first := b.codeLines()[0]
	code := first[strings.LastIndex(first, " ")+1:]
	ipIn(t, n.cli, "addr", "add", "192.168.1.50/24", "dev", "eth0")

	post := func(code string) (string, int) {
		return inNS(n.cli, 30*time.Second, "curl", "-sk", "-m", "25", "-w", "\n%{http_code}", "https://192.168.1.1/setup",
			"--data-urlencode", "code="+code, "--data-urlencode", "site=su1 office",
			"--data-urlencode", "password=correct horse battery", "--data-urlencode", "password2=correct horse battery",
			"--data-urlencode", "primary-interface=wan0", "--data-urlencode", "primary-mode=static",
			"--data-urlencode", "primary-address=10.99.1.2/30", "--data-urlencode", "primary-gateway=10.99.1.1",
			"--data-urlencode", "backup-interface=", "--data-urlencode", "pbx=192.168.1.10",
			"--data-urlencode", "trunks=203.0.113.0/24", "--data-urlencode", "admin=")
	}
	if out, _ := post("WRONG-CODE"); !strings.HasSuffix(out, "403") {
		t.Fatalf("a wrong code: %.300s", out)
	}
	if _, err := os.Stat(b.conf); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a wrong code wrote a config")
	}
	out, _ := post(strings.ToLower(code))
	if !strings.HasSuffix(out, "200") || !strings.Contains(out, `id="applied"`) {
		t.Fatalf("the form with the right code:\n%s", out)
	}
	if _, err := os.Stat(b.conf); err != nil {
		t.Fatalf("no first config written: %v", err)
	}
	// The daemon runs from it.
	labtest.WaitFor(t, "the daemon's control socket", 30*time.Second, func() bool {
		var v []any
		return control.Client{Socket: b.sock}.GetJSON(control.PathAlerts, &v) == nil
	})
	if !strings.Contains(b.log.String(), "appliance running") {
		t.Fatal("the daemon did not say it runs")
	}
	// Not confirmed: back to the setup state, with the same code, the config in the history.
	b.waitLog(t, "back to the setup state", 30*time.Second)
	labtest.WaitFor(t, "the setup state again", 30*time.Second, func() bool { return len(b.codeLines()) > 1 })
	if again := b.codeLines()[len(b.codeLines())-1]; !strings.HasSuffix(again, " "+code) {
		t.Fatalf("the code changed: %q, then %q", first, again)
	}
	if _, err := os.Stat(b.conf); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unconfirmed config is still in force: %v", err)
	}
	if des, _ := os.ReadDir(b.conf + ".history"); len(des) == 0 {
		t.Fatal("the unconfirmed config was not kept in the history")
	}
	labtest.WaitFor(t, "the setup page again", 20*time.Second, func() bool {
		st, err := status(n.cli, "192.168.1.1")
		return err == nil && st["setup"] == true
	})
}
