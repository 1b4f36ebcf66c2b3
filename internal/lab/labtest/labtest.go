// Package labtest holds what the namespace tests of every package share: the root check, a lab per test, waiting on conditions.
package labtest

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/internal/lab"
)

// RequireRoot fails the test, never skips it, unless it runs as root with tools on PATH:
// machines and CI run as root, and a namespace test that silently skipped there would hide a
// broken setup.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces, nftables): run the suite with sudo scripts/test.sh")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("this test needs %s: install the packages in scripts/apt-packages.txt (sudo scripts/setup.sh)", tool)
		}
	}
}

// New builds a lab with a prefix unique to the test and tears it down when the test ends.
func New(t testing.TB, tools ...string) *lab.Lab {
	t.Helper()
	RequireRoot(t, tools...)
	l, err := lab.New(lab.Unique(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	})
	return l
}

// WaitFor polls cond until it holds, and fails the test if it does not within timeout.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Netns makes an empty network namespace named after the test and suffix, removed when the
// test ends, and returns its name and a handle on it (for netcfg.New and netlink).
func Netns(t testing.TB, suffix string) (string, netns.NsHandle) {
	t.Helper()
	RequireRoot(t)
	name := lab.Unique(t) + "-" + suffix
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	return name, h
}

// AcceptAndClose listens on addr in host and closes every connection it accepts, until the
// test ends: a TCP port that answers, for reachability checks through the firewall.
func AcceptAndClose(t testing.TB, l *lab.Lab, host, addr string) {
	t.Helper()
	ln, err := l.ListenTCP(host, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}
