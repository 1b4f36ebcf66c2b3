// Package lab builds a network-namespace model of an office, its two ISPs and the internet, for tests and the demo lab.
package lab

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// Grace periods for stopping processes: SIGTERM, then SIGKILL.
const (
	termGrace = 3 * time.Second
	killGrace = 2 * time.Second
)

// netnsDir is where `ip netns` (and vishvananda/netns) keep named namespaces.
const netnsDir = "/run/netns"

// Lab is a set of network namespaces named Prefix+"-"+host. It only ever
// touches the root namespace to create and delete those names.
type Lab struct {
	Prefix string

	mu      sync.Mutex
	created []string // namespaces to delete; nil for an attached lab
	attach  bool     // Close deletes whatever namespaces with Prefix exist
	procs   map[*exec.Cmd]*proc
	closed  bool
}

type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result, valid after done
}

var validPrefix = regexp.MustCompile(`^[a-z0-9]{1,12}$`)

// CheckPrefix says whether prefix can name a lab: it becomes part of namespace names and of
// paths (`appliance lab` keeps its files under it), so it is kept to a short [a-z0-9] word.
func CheckPrefix(prefix string) error {
	if !validPrefix.MatchString(prefix) {
		return fmt.Errorf("lab: prefix %q must be 1-12 of [a-z0-9]", prefix)
	}
	return nil
}

// New builds a complete lab. The namespaces must not exist yet (tear down a
// leftover lab with Attach(prefix).Close()). On error, whatever was built is
// torn down again.
func New(prefix string) (*Lab, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	l := &Lab{Prefix: prefix, procs: map[*exec.Cmd]*proc{}}
	if err := l.build(); err != nil {
		return nil, errors.Join(fmt.Errorf("lab: new %s: %w", prefix, err), l.Close())
	}
	return l, nil
}

// Attach returns a Lab for namespaces made earlier, e.g. by another process
// running `lab up`. Its Close stops every process still inside them and
// deletes every existing Prefix-host namespace.
func Attach(prefix string) *Lab {
	return &Lab{Prefix: prefix, attach: true, procs: map[*exec.Cmd]*proc{}}
}

// Unique returns a short lab prefix for a test: "t" and 6 hex digits of a
// hash of the test name and the pid, so tests in parallel `go test ./...`
// package binaries do not collide and namespace names stay short.
func Unique(t interface{ Name() string }) string {
	sum := sha256.Sum256([]byte(t.Name() + "\x00" + strconv.Itoa(os.Getpid())))
	return fmt.Sprintf("t%x", sum[:3])
}

// NS returns the namespace name of host.
func (l *Lab) NS(host string) string { return l.Prefix + "-" + host }

// Command returns `ip netns exec NS args...`.
func (l *Lab) Command(host string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.NS(host)}, args...)...)
}

// Run runs args in host and returns the combined output.
func (l *Lab) Run(host string, args ...string) (string, error) {
	out, err := l.Command(host, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: %s: %s: %w: %s", host, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Start runs args in host in the background until it exits or the lab is
// closed. Its stdout and stderr go to a buffer read by Output. The lab waits
// for the process itself: use l.Wait or l.Stop, never cmd.Wait.
func (l *Lab) Start(host string, args ...string) (*exec.Cmd, error) {
	cmd := l.Command(host, args...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Own process group, so stopping also reaches children of e.g. `sh -c`.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("lab: start %s: %s: lab closed", host, strings.Join(args, " "))
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s: %s: %w", host, strings.Join(args, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.procs[cmd] = p
	return cmd, nil
}

// Output returns what a process from Start has written so far.
func (l *Lab) Output(cmd *exec.Cmd) string {
	if p := l.proc(cmd); p != nil {
		return p.out.String()
	}
	return ""
}

// Wait waits for a process from Start to exit and returns cmd.Wait's error.
func (l *Lab) Wait(cmd *exec.Cmd) error {
	p := l.proc(cmd)
	if p == nil {
		return errors.New("lab: wait: process not started by this lab")
	}
	<-p.done
	return p.err
}

// Stop ends a process from Start (SIGTERM, SIGKILL after a grace period) and
// waits for it. Stopping an exited process is not an error.
func (l *Lab) Stop(cmd *exec.Cmd) error {
	p := l.proc(cmd)
	if p == nil {
		return errors.New("lab: stop: process not started by this lab")
	}
	return stopProcs([]*proc{p})
}

func (l *Lab) proc(cmd *exec.Cmd) *proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[cmd]
}

// Close stops every process from Start, then any other process left inside
// the lab's namespaces, and deletes the namespaces. Calls after the first
// return nil.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	var procs []*proc
	for _, p := range l.procs {
		procs = append(procs, p)
	}
	l.mu.Unlock()

	var errs []error
	if err := stopProcs(procs); err != nil {
		errs = append(errs, err)
	}
	names := l.created
	if l.attach {
		var err error
		if names, err = l.existing(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := killInNamespaces(names); err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(netnsDir, n)); errors.Is(err, os.ErrNotExist) {
			continue // already gone, e.g. removed by `lab down`
		}
		// Deleting a namespace also destroys its interfaces and their veth peers.
		if err := runCmd("ip", "netns", "del", n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab: close %s: %w", l.Prefix, err)
	}
	return nil
}

// existing lists the lab's namespaces that exist now.
func (l *Lab) existing() ([]string, error) {
	out, err := output("ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, h := range Hosts {
		want[l.NS(h)] = true
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// Lines look like "name" or "name (id: 3)".
		if f := strings.Fields(line); len(f) > 0 && want[f[0]] {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// stopProcs sends SIGTERM to each process group, SIGKILL to those still
// running after termGrace, and waits for all of them, bounded.
func stopProcs(procs []*proc) error {
	signal := func(sig syscall.Signal) {
		for _, p := range procs {
			select {
			case <-p.done: // reaped: its pid may belong to someone else now
			default:
				_ = syscall.Kill(-p.cmd.Process.Pid, sig)
			}
		}
	}
	waitAll := func(d time.Duration) bool {
		deadline := time.After(d)
		for _, p := range procs {
			select {
			case <-p.done:
			case <-deadline:
				return false
			}
		}
		return true
	}
	signal(syscall.SIGTERM)
	if waitAll(termGrace) {
		return nil
	}
	signal(syscall.SIGKILL)
	if waitAll(killGrace) {
		return nil
	}
	var stuck []string
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			stuck = append(stuck, strconv.Itoa(p.cmd.Process.Pid))
		}
	}
	return fmt.Errorf("processes %s survived SIGKILL", strings.Join(stuck, ","))
}

// killInNamespaces stops processes whose network namespace is one of names,
// by pid: SIGTERM, then SIGKILL after termGrace. Without this, a process
// started some other way (or by another process, for Attach) keeps a
// deleted namespace alive, invisibly.
func killInNamespaces(names []string) error {
	signal := func(sig syscall.Signal) (int, error) {
		pids, err := pidsIn(names)
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
		return len(pids), err
	}
	waitGone := func(d time.Duration) (bool, error) {
		deadline := time.Now().Add(d)
		for {
			pids, err := pidsIn(names)
			if err != nil || len(pids) == 0 {
				return len(pids) == 0, err
			}
			if time.Now().After(deadline) {
				return false, nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if n, err := signal(syscall.SIGTERM); n == 0 || err != nil {
		return err
	}
	if gone, err := waitGone(termGrace); gone || err != nil {
		return err
	}
	if _, err := signal(syscall.SIGKILL); err != nil {
		return err
	}
	if gone, err := waitGone(killGrace); gone || err != nil {
		return err
	}
	pids, _ := pidsIn(names)
	return fmt.Errorf("processes %v survived SIGKILL", pids)
}

// pidsIn lists processes whose network namespace is one of the named ones,
// like `ip netns pids`, never this process itself.
func pidsIn(names []string) ([]int, error) {
	type key struct{ dev, ino uint64 }
	want := map[key]bool{}
	for _, n := range names {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(netnsDir, n), &st); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("stat netns %s: %w", n, err)
		}
		want[key{st.Dev, st.Ino}] = true
	}
	if len(want) == 0 {
		return nil, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		// Fails for exited processes and kernel threads: not ours to stop.
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		if want[key{st.Dev, st.Ino}] {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Do runs fn on an OS thread switched into host's network namespace. Sockets
// fn creates stay in that namespace for their whole life. fn must not rely
// on goroutines it starts being in the namespace.
func (l *Lab) Do(host string, fn func() error) error {
	target, err := netns.GetFromName(l.NS(host))
	if err != nil {
		return fmt.Errorf("lab: do in %s: %w", host, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		// A fresh goroutine: if switching back fails it exits still locked,
		// and the runtime then retires the thread instead of reusing it in
		// the wrong namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: do in %s: %w", host, err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: do in %s: %w", host, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("lab: do in %s: switch back: %w", host, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenTCP listens on addr ("ip:port") inside host.
func (l *Lab) ListenTCP(host, addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.Do(host, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// ListenUDP listens on addr ("ip:port") inside host.
func (l *Lab) ListenUDP(host, addr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := l.Do(host, func() error {
		a, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp", a)
		return err
	})
	return c, err
}

// DialTCP connects from host to addr ("ip:port").
func (l *Lab) DialTCP(host, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.Do(host, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// DialUDP makes a UDP socket in host bound to laddr ("" for any) and
// connected to raddr.
func (l *Lab) DialUDP(host, laddr, raddr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := l.Do(host, func() error {
		var la *net.UDPAddr
		if laddr != "" {
			var err error
			if la, err = net.ResolveUDPAddr("udp", laddr); err != nil {
				return err
			}
		}
		ra, err := net.ResolveUDPAddr("udp", raddr)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp", la, ra)
		return err
	})
	return c, err
}

// sysctl writes /proc/sys/<key> = value inside host. Network sysctls resolve
// against the namespace of the thread that opens them.
func (l *Lab) sysctl(host string, kv map[string]string) error {
	return l.Do(host, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0); err != nil {
				return fmt.Errorf("sysctl in %s: %w", host, err)
			}
		}
		return nil
	})
}

func runCmd(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

// output runs a command and returns its combined output; the error names
// the command and includes the output.
func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
