package lab_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

func newLab(t *testing.T, prefix string) *lab.Lab {
	t.Helper()
	l, err := lab.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// namespaces returns the existing namespaces of the lab with prefix.
func namespaces(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var ns []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			ns = append(ns, f[0])
		}
	}
	return ns
}

func ping(t *testing.T, l *lab.Lab, host, addr string) {
	t.Helper()
	if _, err := l.Run(host, "ping", "-c1", "-W2", addr); err != nil {
		t.Error(err)
	}
}

// masquerade stands in for the appliance's NAT: the ISPs (like real ones)
// do not route the RFC 1918 LAN.
func masquerade(t *testing.T, l *lab.Lab) {
	t.Helper()
	cmd := l.Command(lab.HostBox, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table ip labtest {
	chain post {
		type nat hook postrouting priority srcnat;
		oifname { "` + lab.BoxWANIf + `", "` + lab.BoxLTEIf + `" } masquerade
	}
}`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
}

func TestLab(t *testing.T) {
	labtest.RequireRoot(t, "ping", "nft")
	prefix := lab.Unique(t)
	l := newLab(t, prefix)
	if got := len(namespaces(t, prefix)); got != len(lab.Hosts) {
		t.Fatalf("%d namespaces with prefix %s, want %d", got, prefix, len(lab.Hosts))
	}
	if err := l.ConfigureBox(); err != nil {
		t.Fatal(err)
	}

	t.Run("v6 routed", func(t *testing.T) {
		ping(t, l, lab.HostPBX, lab.Trunk6)
		ping(t, l, lab.HostPhone, lab.Probe6)
	})
	t.Run("v4 needs NAT", func(t *testing.T) {
		if out, err := l.Run(lab.HostPBX, "ping", "-c1", "-W1", lab.Trunk4); err == nil {
			t.Fatalf("LAN IPv4 reached the internet without NAT:\n%s", out)
		}
		masquerade(t, l)
		ping(t, l, lab.HostPBX, lab.Trunk4)
		ping(t, l, lab.HostPhone, lab.Probe4Alt)
	})
	t.Run("box uplinks", func(t *testing.T) {
		ping(t, l, lab.HostBox, lab.Probe4)
		if _, err := l.Run(lab.HostBox, "ping", "-c1", "-W2", "-I", lab.BoxLTEIf, lab.Probe4); err != nil {
			t.Error(err)
		}
		ping(t, l, lab.HostAttacker, lab.BoxWAN6)
	})
	t.Run("tcp", func(t *testing.T) {
		ln, err := l.ListenTCP(lab.HostPBX, net.JoinHostPort(lab.PBX4, "5061"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
		c, err := l.DialTCP(lab.HostPhone, net.JoinHostPort(lab.PBX4, "5061"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "REGISTER\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "REGISTER\n" {
			t.Fatalf("echo = %q, %v", line, err)
		}
	})
	t.Run("udp", func(t *testing.T) {
		srv, err := l.ListenUDP(lab.HostTrunk, net.JoinHostPort(lab.Trunk6, "5060"))
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c, err := l.DialUDP(lab.HostPBX, "", net.JoinHostPort(lab.Trunk6, "5060"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("OPTIONS")); err != nil {
			t.Fatal(err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		n, from, err := srv.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != "OPTIONS" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		// Routed, not NATed: the trunk sees the PBX's own v6 address.
		if from.IP.String() != lab.PBX6 {
			t.Errorf("trunk saw source %s, want %s", from.IP, lab.PBX6)
		}
	})
	t.Run("start output", func(t *testing.T) {
		cmd, err := l.Start(lab.HostRemote, "sh", "-c", "echo hello; ip -br addr show eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Wait(cmd); err != nil {
			t.Fatal(err)
		}
		if out := l.Output(cmd); !strings.Contains(out, "hello") || !strings.Contains(out, lab.Remote4) {
			t.Errorf("output %q", out)
		}
	})

	// Close stops a tracked process (one ignoring SIGTERM, so SIGKILL is
	// needed) and an untracked one, and removes every namespace.
	tracked, err := l.Start(lab.HostTrunk, "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(l.Output(tracked), "ready"); {
		if time.Now().After(deadline) {
			t.Fatal("tracked process never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	untracked := l.Command(lab.HostAdmin, "sleep", "600")
	if err := untracked.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = untracked.Wait() }() // reap it so the check below sees it gone
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if ns := namespaces(t, prefix); len(ns) != 0 {
		t.Errorf("namespaces left after Close: %v", ns)
	}
	if err := l.Wait(tracked); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("tracked process ignoring SIGTERM: Wait = %v, want killed", err)
	}
	for _, pid := range []int{tracked.Process.Pid, untracked.Process.Pid} {
		waitGone(t, pid)
	}
}

// waitGone waits until pid no longer exists.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Errorf("pid %d still running after Close", pid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitExec(t *testing.T, pid int, comm string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never became %s (comm %q, %v)", pid, comm, b, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTwoLabs(t *testing.T) {
	labtest.RequireRoot(t, "ping", "nft")
	prefixes := []string{lab.Unique(t) + "a", lab.Unique(t) + "b"}
	labs := make([]*lab.Lab, len(prefixes))
	errs := make([]error, len(prefixes))
	var wg sync.WaitGroup
	for i, p := range prefixes {
		wg.Go(func() { labs[i], errs[i] = lab.New(p) })
	}
	wg.Wait()
	for _, l := range labs {
		if l != nil {
			t.Cleanup(func() {
				if err := l.Close(); err != nil {
					t.Error(err)
				}
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, l := range labs {
		if err := l.ConfigureBox(); err != nil {
			t.Fatal(err)
		}
		ping(t, l, lab.HostPBX, lab.Trunk6)
		// Same address and port in both labs: the namespaces are independent.
		ln, err := l.ListenTCP(lab.HostTrunk, net.JoinHostPort(lab.Trunk4, "5061"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
}

func TestAttachClose(t *testing.T) {
	labtest.RequireRoot(t, "ping", "nft")
	prefix := lab.Unique(t)
	l := newLab(t, prefix)
	stray := l.Command(lab.HostNet, "sleep", "600")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = stray.Wait() }()
	// `ip netns exec` enters the namespace after Start returns; a process not
	// in it yet is not one `lab down` can find. It is in once it is sleep.
	waitExec(t, stray.Process.Pid, "sleep")

	// What `lab down` does from another process.
	if err := lab.Attach(prefix).Close(); err != nil {
		t.Fatal(err)
	}
	if ns := namespaces(t, prefix); len(ns) != 0 {
		t.Errorf("namespaces left after Attach.Close: %v", ns)
	}
	waitGone(t, stray.Process.Pid)
	// The owner's Close must cope with namespaces already gone.
	if err := l.Close(); err != nil {
		t.Error(err)
	}
}

func TestNewRejectsExisting(t *testing.T) {
	labtest.RequireRoot(t, "ping", "nft")
	prefix := lab.Unique(t)
	newLab(t, prefix)
	if _, err := lab.New(prefix); err == nil {
		t.Fatal("second New with the same prefix succeeded")
	}
	// The failed New must not have deleted the first lab's namespaces.
	if got := len(namespaces(t, prefix)); got != len(lab.Hosts) {
		t.Errorf("%d namespaces left, want %d", got, len(lab.Hosts))
	}
}

func TestUnique(t *testing.T) {
	a := lab.Unique(t)
	if len(a) != 7 || a[0] != 't' || a != lab.Unique(t) {
		t.Errorf("Unique = %q", a)
	}
	t.Run("sub", func(t *testing.T) {
		if lab.Unique(t) == a {
			t.Error("subtest got its parent's prefix")
		}
	})
}

// A New that fails half-way removes what it built and nothing else.
func TestNewFailureTearsDown(t *testing.T) {
	labtest.RequireRoot(t, "ping", "nft")
	prefix := lab.Unique(t)
	last := lab.Attach(prefix).NS(lab.Hosts[len(lab.Hosts)-1])
	if out, err := exec.Command("ip", "netns", "add", last).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = lab.Attach(prefix).Close() })
	if _, err := lab.New(prefix); err == nil {
		t.Fatal("New succeeded although a namespace already existed")
	} else if !strings.HasPrefix(err.Error(), "lab: ") {
		t.Errorf("error %q not wrapped with lab:", err)
	}
	if ns := namespaces(t, prefix); len(ns) != 1 || ns[0] != last {
		t.Errorf("namespaces after failed New: %v, want only %s", ns, last)
	}
}
