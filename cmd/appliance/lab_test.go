package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// office is a lab with the appliance running in its box namespace.
type office struct {
	*lab.Lab
	t       *testing.T
	dir     string // config, state and control socket
	config  string
	daemon  *exec.Cmd
	started int // how many "appliance running" lines the daemon's output had at the last start
}

func newOffice(t *testing.T) *office {
	t.Helper()
	labtest.RequireRoot(t, "nft", "sipp")
	l := labtest.New(t)
	o := &office{Lab: l, t: t, dir: t.TempDir()}
	o.config = filepath.Join(o.dir, "appliance.toml")
	if err := os.WriteFile(o.config, lab.Config, 0o644); err != nil {
		t.Fatal(err)
	}
	o.start()
	return o
}

// start runs the daemon in the box namespace and waits until it says it is running.
func (o *office) start() {
	o.t.Helper()
	cmd, err := o.Start(lab.HostBox, bin, "run", "--config", o.config,
		"--state", filepath.Join(o.dir, "state"), "--control", filepath.Join(o.dir, "control.sock"))
	if err != nil {
		o.t.Fatal(err)
	}
	o.daemon = cmd
	o.waitLog("appliance running")
}

func (o *office) waitLog(want string) {
	o.t.Helper()
	labtest.WaitFor(o.t, "the daemon to log "+strconv.Quote(want), 20*time.Second, func() bool {
		return strings.Contains(o.Output(o.daemon), want)
	})
}

// cli runs the appliance CLI in the box namespace.
func (o *office) cli(args ...string) string {
	o.t.Helper()
	switch args[0] {
	case "block", "unblock", "blocked": // the running daemon's owner is the one writer
		args = append(args, "--control", filepath.Join(o.dir, "control.sock"), "--state", filepath.Join(o.dir, "state"))
	}
	out, err := o.Run(lab.HostBox, append([]string{bin}, args...)...)
	if err != nil {
		o.t.Fatalf("appliance %v: %v", args, err)
	}
	return out
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ .*comment "([^"]*)"`)

// hits is the packet counter of the first rule of chain with that comment: what the status
// page shows and what an admin reads with `nft list chain`.
func (o *office) hits(chain, comment string) int {
	o.t.Helper()
	return ruleHits(o.t, o.Lab, chain, comment)
}

// ruleHits is hits in any lab's box.
func ruleHits(t *testing.T, l *lab.Lab, chain, comment string) int {
	t.Helper()
	out, err := l.Run(lab.HostBox, "nft", "list", "chain", "inet", "appliance", chain)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range counterRE.FindAllStringSubmatch(out, -1) {
		if m[2] == comment {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	t.Fatalf("no rule %q in chain %s:\n%s", comment, chain, out)
	return 0
}

// waitHits waits until the rule's counter has grown by at least n.
func (o *office) waitHits(chain, comment string, before, n int) {
	o.t.Helper()
	labtest.WaitFor(o.t, fmt.Sprintf("%d more hits on %s %q", n, chain, comment), 10*time.Second, func() bool {
		return o.hits(chain, comment) >= before+n
	})
}

// udpSink listens on a LAN host and reports which sources' datagrams arrived.
type udpSink struct {
	conn *net.UDPConn
	got  chan string // "source-ip payload"
}

func (o *office) udpSink(host, addr string) *udpSink {
	o.t.Helper()
	c, err := o.ListenUDP(host, addr)
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(func() { c.Close() })
	s := &udpSink{conn: c, got: make(chan string, 100)}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				close(s.got)
				return
			}
			s.got <- from.AddrPort().Addr().Unmap().String() + " " + string(buf[:n])
		}
	}()
	return s
}

// send sends one datagram from a host.
func (o *office) send(host, from, to, payload string) {
	o.t.Helper()
	c, err := o.DialUDP(host, net.JoinHostPort(from, "0"), to)
	if err != nil {
		o.t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(payload)); err != nil {
		o.t.Fatal(err)
	}
}

// expectOnly reads the sink until the marker arrives: nothing else may arrive before it.
// Datagrams that crossed the box earlier would have arrived earlier on the same path.
func (s *udpSink) expectOnly(t *testing.T, marker string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-s.got:
			if !ok {
				t.Fatal("sink closed")
			}
			if strings.HasSuffix(m, " "+marker) {
				return
			}
			t.Fatalf("a datagram that must be dropped reached the LAN: %q", m)
		case <-deadline:
			t.Fatalf("the marker %q never arrived", marker)
		}
	}
}

func (o *office) canConnect(host, addr string) bool {
	c, err := o.DialTCP(host, addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (o *office) tcpListen(host, addr string) {
	o.t.Helper()
	labtest.AcceptAndClose(o.t, o.Lab, host, addr)
}

// TestOfficeFirewall runs the appliance on the lab config and checks each door with real
// packets. The subtests share one lab and run in order.
func TestOfficeFirewall(t *testing.T) {
	o := newOffice(t)
	wan := net.JoinHostPort(lab.BoxWAN4, "5060")

	t.Run("a SIP call from the trunk provider reaches the PBX through the DNAT", func(t *testing.T) {
		for _, transport := range []string{"u1", "t1"} {
			uas, err := o.Start(lab.HostPBX, "sipp", "-sn", "uas", "-i", lab.PBX4, "-p", "5060", "-t", transport, "-m", "1", "-nostdin", "-timeout", "30s")
			if err != nil {
				t.Fatal(err)
			}
			// The caller starts only once the PBX listens: a TCP connect that meets a closed
			// port ends sipp's call at once.
			ssArgs := map[string]string{"u1": "-Hlun", "t1": "-Hltn"}[transport]
			labtest.WaitFor(t, "sipp's UAS to listen on the PBX ("+transport+")", 10*time.Second, func() bool {
				out, _ := o.Run(lab.HostPBX, "ss", ssArgs, "sport = :5060")
				return strings.Contains(out, lab.PBX4+":5060")
			})
			uac, err := o.Run(lab.HostTrunk, "sipp", "-sn", "uac", wan, "-i", lab.Trunk4, "-t", transport, "-m", "1", "-nostdin", "-timeout", "30s", "-max_reconnect", "10", "-reconnect_sleep", "200")
			if err != nil {
				t.Fatalf("the trunk's call (%s) failed: %v\n%s\nPBX side:\n%s", transport, err, uac, o.Output(uas))
			}
			// Over TCP the UAS counts the caller hanging up its connection during the UAS's
			// closing pause as a failure; the caller's success already needs the PBX's 180, 200
			// and the answer to its BYE.
			if err := o.Wait(uas); err != nil && transport == "u1" {
				t.Fatalf("the PBX did not complete the call (%s): %v\n%s", transport, err, o.Output(uas))
			}
		}
	})

	t.Run("SIP from an unknown internet address does not reach the PBX", func(t *testing.T) {
		sink := o.udpSink(lab.HostPBX, "[::]:5060")
		before := o.hits("forward", "everything else")
		for i := 0; i < 5; i++ {
			o.send(lab.HostAttacker, lab.Attacker4, wan, "OPTIONS sip:100@pbx SIP/2.0 attacker")
			o.send(lab.HostAttacker, lab.Attacker6, net.JoinHostPort(lab.PBX6, "5060"), "OPTIONS sip:100@pbx SIP/2.0 attacker6")
		}
		o.waitHits("forward", "everything else", before, 10)
		o.send(lab.HostTrunk, lab.Trunk4, wan, "trunk-marker")
		sink.expectOnly(t, "trunk-marker")
		o.send(lab.HostTrunk, lab.Trunk6, net.JoinHostPort(lab.PBX6, "5060"), "trunk6-marker")
		sink.expectOnly(t, "trunk6-marker")
		sink.conn.Close()
	})

	t.Run("SSH reaches the box from the LAN and admin networks only", func(t *testing.T) {
		o.tcpListen(lab.HostBox, "[::]:22")
		for _, c := range []struct {
			host, addr string
			want       bool
		}{
			{lab.HostPhone, net.JoinHostPort(lab.BoxLAN4, "22"), true},
			{lab.HostPhone, net.JoinHostPort(lab.BoxLAN6, "22"), true},
			{lab.HostAdmin, net.JoinHostPort(lab.BoxWAN4, "22"), true},
			{lab.HostAdmin, net.JoinHostPort(lab.BoxWAN6, "22"), true},
			{lab.HostAttacker, net.JoinHostPort(lab.BoxWAN4, "22"), false},
			{lab.HostAttacker, net.JoinHostPort(lab.BoxWAN6, "22"), false},
			{lab.HostTrunk, net.JoinHostPort(lab.BoxLTE4, "22"), false}, // a SIP peer is no admin
		} {
			before := o.hits("input", "everything else")
			if got := o.canConnect(c.host, c.addr); got != c.want {
				t.Errorf("SSH from %s to %s: connected=%v, want %v", c.host, c.addr, got, c.want)
			}
			if !c.want {
				o.waitHits("input", "everything else", before, 1)
			}
		}
	})

	t.Run("a phone's web page is unreachable from the internet", func(t *testing.T) {
		o.tcpListen(lab.HostPhone, "[::]:80")
		if !o.canConnect(lab.HostPBX, net.JoinHostPort(lab.Phone4, "80")) {
			t.Fatal("the phone's web page must answer on the LAN (test setup)")
		}
		before := o.hits("forward", "everything else")
		for _, addr := range []string{net.JoinHostPort(lab.Phone6, "80"), net.JoinHostPort(lab.BoxWAN4, "80")} {
			if o.canConnect(lab.HostAttacker, addr) {
				t.Errorf("the attacker reached %s", addr)
			}
		}
		o.waitHits("forward", "everything else", before, 1) // the routed IPv6 attempt
	})

	t.Run("a blocked address is dropped, established flows too, and comes back after its timeout", func(t *testing.T) {
		o.tcpListen(lab.HostPBX, net.JoinHostPort(lab.PBX4, "5090")) // the 3CX tunnel is open to anyone
		tunnel := net.JoinHostPort(lab.BoxWAN4, "5090")
		if !o.canConnect(lab.HostAttacker, tunnel) {
			t.Fatal("the tunnel port must be open before the block (test setup)")
		}
		// An RTP-like UDP flow from the attacker, established before the block.
		rtp := o.udpSink(lab.HostPBX, net.JoinHostPort(lab.PBX4, "9000"))
		flow, err := o.DialUDP(lab.HostAttacker, net.JoinHostPort(lab.Attacker4, "40000"), net.JoinHostPort(lab.BoxWAN4, "9000"))
		if err != nil {
			t.Fatal(err)
		}
		defer flow.Close()
		flow.Write([]byte("before"))
		if m := <-rtp.got; m != lab.Attacker4+" before" {
			t.Fatalf("got %q", m)
		}

		out := o.cli("block", lab.Attacker4, "--for", "3s")
		if !strings.Contains(out, "blocked "+lab.Attacker4) {
			t.Fatalf("block said %q", out)
		}
		if !strings.Contains(o.cli("blocked"), lab.Attacker4) {
			t.Fatal("`appliance blocked` does not list the address")
		}
		before := o.hits("blocklist", "blocked address")
		if o.canConnect(lab.HostAttacker, tunnel) {
			t.Error("a blocked address connected")
		}
		flow.Write([]byte("after"))
		o.waitHits("blocklist", "blocked address", before, 2)
		o.send(lab.HostTrunk, lab.Trunk4, net.JoinHostPort(lab.BoxWAN4, "9000"), "trunk-marker")
		rtp.expectOnly(t, "trunk-marker")

		labtest.WaitFor(t, "the block to expire", 15*time.Second, func() bool {
			return !strings.Contains(o.cli("blocked"), lab.Attacker4)
		})
		if !o.canConnect(lab.HostAttacker, tunnel) {
			t.Error("the address is still dropped after its block expired")
		}
	})

	t.Run("trusted peers and admin networks cannot be blocked", func(t *testing.T) {
		out, err := o.Run(lab.HostBox, bin, "block", lab.Trunk4, "--control", filepath.Join(o.dir, "control.sock"))
		if err == nil || !strings.Contains(out, "never blocked") {
			t.Errorf("blocking the trunk must be refused, got %v: %s", err, out)
		}
	})

	t.Run("a bad config on reload leaves the running firewall as it was", func(t *testing.T) {
		before, _ := o.Run(lab.HostBox, "nft", "list", "table", "inet", "appliance")
		bad := strings.Replace(string(lab.Config), `networks = ["192.0.2.10", "2001:db8:1::10"]`, `networks = ["0.0.0.0/0"]`, 1)
		if err := os.WriteFile(o.config, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(o.daemon.Process.Pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		o.waitLog("reload refused")
		if !strings.Contains(o.Output(o.daemon), "sip_peers.trunk.networks") {
			t.Errorf("the log must name the field:\n%s", o.Output(o.daemon))
		}
		after, _ := o.Run(lab.HostBox, "nft", "list", "table", "inet", "appliance")
		if stripCounters(after) != stripCounters(before) {
			t.Errorf("the ruleset changed after a refused reload")
		}
		// A daemon started on the bad file refuses to start and touches nothing.
		out, err := o.Run(lab.HostBox, bin, "run", "--config", o.config, "--state", t.TempDir(), "--control", "")
		if err == nil || !strings.Contains(out, o.config+":") || !strings.Contains(out, "sip_peers.trunk.networks") {
			t.Errorf("a start on a bad config must fail naming the file and field, got %v:\n%s", err, out)
		}
		after, _ = o.Run(lab.HostBox, "nft", "list", "table", "inet", "appliance")
		if stripCounters(after) != stripCounters(before) {
			t.Errorf("the ruleset changed after a refused start")
		}
		if err := os.WriteFile(o.config, lab.Config, 0o644); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the firewall survives killing the daemon and a restart replaces it", func(t *testing.T) {
		o.cli("block", lab.Attacker6, "--for", "1h")
		if err := syscall.Kill(o.daemon.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		o.Wait(o.daemon)
		// The box is still locked: no SSH from the internet, SIP from the trunk still flows.
		o.tcpListen(lab.HostBox, net.JoinHostPort(lab.BoxWAN4, "2222"))
		before := o.hits("input", "everything else")
		if o.canConnect(lab.HostAttacker, net.JoinHostPort(lab.BoxWAN4, "22")) {
			t.Error("SSH open from the internet after the daemon died")
		}
		o.waitHits("input", "everything else", before, 1)
		sink := o.udpSink(lab.HostPBX, net.JoinHostPort(lab.PBX4, "5060"))
		o.send(lab.HostTrunk, lab.Trunk4, wan, "after-crash")
		sink.expectOnly(t, "after-crash")
		sink.conn.Close()

		o.start()
		if !strings.Contains(o.cli("blocked"), lab.Attacker6) {
			t.Error("the restart lost the blocklist")
		}
	})
}

// Timers of dynamic set elements (sipguard's per-source rate meter) count down too.
var countersRE = regexp.MustCompile(`counter packets \d+ bytes \d+| expires [0-9dhms]+`)

func stripCounters(s string) string { return countersRE.ReplaceAllString(s, "counter") }

// TestLabUpDown is the README's lab command: up starts the appliance in the lab and says where
// to look; down stops it and removes every namespace.
func TestLabUpDown(t *testing.T) {
	labtest.RequireRoot(t, "nft", "sipp")
	prefix := lab.Unique(t)
	t.Cleanup(func() { _ = exec.Command(bin, "lab", "down", "--prefix", prefix).Run() })
	out, err := exec.Command(bin, "lab", "up", "--prefix", prefix).CombinedOutput()
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	for _, want := range []string{"The lab is up", prefix + "-box", "lab down --prefix " + prefix} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lab up output lacks %q:\n%s", want, out)
		}
	}
	status, _ := exec.Command(bin, "lab", "status", "--prefix", prefix).CombinedOutput()
	m := regexp.MustCompile(`PID (\d+) running`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("lab status: %s", status)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	if out, err := exec.Command("ip", "netns", "exec", prefix+"-box", "nft", "list", "table", "inet", "appliance").CombinedOutput(); err != nil {
		t.Fatalf("no firewall in the lab's box: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "lab", "down", "--prefix", prefix).CombinedOutput(); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if alive(pid) {
		t.Errorf("the appliance (PID %d) still runs after lab down", pid)
	}
	ns, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(ns), prefix+"-") {
		t.Errorf("namespaces left after lab down:\n%s", ns)
	}
}
