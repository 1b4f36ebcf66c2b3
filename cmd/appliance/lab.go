package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/web"
)

// labDir keeps the running lab's config, log and daemon PID between `lab up` and `lab down`.
func labDir(prefix string) string { return filepath.Join("/run/appliance-lab", prefix) }

func labCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	prefix := fs.String("prefix", "lab", "namespace name prefix")
	cfgPath := fs.String("config", "", "appliance config for the box (default: the built-in lab config)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("lab: say up, down or status")
	}
	// The prefix names a directory that `lab down` removes: "../.." must never reach it.
	if err := lab.CheckPrefix(*prefix); err != nil {
		return err
	}
	switch pos[0] {
	case "up":
		return labUp(*prefix, *cfgPath, stdout)
	case "down":
		return labDown(*prefix, stdout)
	case "status":
		return labStatus(*prefix, stdout)
	}
	return fmt.Errorf("lab: unknown action %q: say up, down or status", pos[0])
}

func labUp(prefix, cfgPath string, stdout io.Writer) error {
	cfg := lab.Config
	if cfgPath != "" {
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		cfg = b
	}
	dir := labDir(prefix)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l, err := lab.New(prefix)
	if err != nil {
		return fmt.Errorf("%w (a lab left over? run: appliance lab down --prefix %s)", err, prefix)
	}
	fail := func(err error) error { return errors.Join(err, l.Close()) }
	conf := filepath.Join(dir, "appliance.toml")
	ctl := filepath.Join(dir, "control.sock")
	if err := os.WriteFile(conf, cfg, 0o644); err != nil {
		return fail(fmt.Errorf("lab: %w", err))
	}
	self, err := os.Executable()
	if err != nil {
		return fail(fmt.Errorf("lab: %w", err))
	}
	// A password of its own, so that a newcomer can log in to the lab's page at once.
	pw := labPassword()
	if err := web.SetPassword(filepath.Join(dir, "state"), pw); err != nil {
		return fail(fmt.Errorf("lab: %w", err))
	}
	logPath := filepath.Join(dir, "appliance.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fail(fmt.Errorf("lab: %w", err))
	}
	defer logf.Close()
	// The daemon outlives this command: its own session, output to a file, PID on disk.
	cmd := exec.Command("ip", "netns", "exec", l.NS(lab.HostBox), self, "run", "--config", conf,
		"--state", filepath.Join(dir, "state"), "--control", ctl)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("lab: start appliance: %w", err))
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := os.WriteFile(filepath.Join(dir, "appliance.pid"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fail(fmt.Errorf("lab: %w", err))
	}
	if err := waitForLog(logPath, pid, "appliance running", 15*time.Second); err != nil {
		return fail(err)
	}
	ns := func(h string) string { return l.NS(h) }
	fmt.Fprintf(stdout, `The lab is up: the appliance (PID %d) guards the office in namespace %s.
  config:   %s
  log:      %s
  page:     https://%s/ from the LAN, log in with the password %s
            (the box's own certificate: check its fingerprint with %s web cert --state %s)

Namespaces: %s (PBX %s), %s (phone %s), %s (the box), %s and %s (ISPs),
            %s (internet core), %s (SIP trunk %s), %s (remote office %s),
            %s (attacker %s), %s (admin %s).

Look around:
  ip netns exec %s nft list table inet appliance     # the firewall, with hit counters
  ip netns exec %s %s blocked --control %s            # the blocklist
  ip netns exec %s %s block %s --for 10m --control %s
  %s wan status --control %s                          # uplink health; also: wan force backup|auto
  %s button press --control %s                        # the simulated button: force the modem
  ip netns exec %s curl -s http://%s/api/status       # the status page (http://%s/ from the LAN)
  ip netns exec %s ping -c1 %s                         # the PBX reaches the internet
  ip netns exec %s sipp -sn uas -i %s -p 5060 -m 1 &   # a PBX answering one call
  ip netns exec %s sipp -sn uac %s:5060 -i %s -m 1     # the trunk calls in through the box

Tear it all down:  %s lab down --prefix %s
`, pid, ns(lab.HostBox), conf, logPath, lab.BoxLAN4, pw, self, filepath.Join(dir, "state"),
		ns(lab.HostPBX), lab.PBX4, ns(lab.HostPhone), lab.Phone4, ns(lab.HostBox), ns(lab.HostFTTC), ns(lab.HostLTE),
		ns(lab.HostNet), ns(lab.HostTrunk), lab.Trunk4, ns(lab.HostRemote), lab.Remote4,
		ns(lab.HostAttacker), lab.Attacker4, ns(lab.HostAdmin), lab.Admin4,
		ns(lab.HostBox), ns(lab.HostBox), self, ctl, ns(lab.HostBox), self, lab.Attacker4, ctl,
		self, ctl, self, ctl, ns(lab.HostPhone), lab.BoxLAN4, lab.BoxLAN4,
		ns(lab.HostPBX), lab.Trunk4, ns(lab.HostPBX), lab.PBX4, ns(lab.HostTrunk), lab.BoxWAN4, lab.Trunk4,
		self, prefix)
	return nil
}

// labPassword is a fresh random password: four groups of four lower-case letters.
func labPassword() string {
	const letters = "abcdefghijkmnpqrstuvwxyz"
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	var out []byte
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			out = append(out, '-')
		}
		out = append(out, letters[int(c)%len(letters)])
	}
	return string(out)
}

// waitForLog waits until the daemon's log says want, or the daemon dies, or the deadline passes.
func waitForLog(path string, pid int, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(want)) {
			return nil
		}
		if syscall.Kill(pid, 0) != nil {
			return fmt.Errorf("lab: the appliance exited:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	return fmt.Errorf("lab: the appliance did not start within %s:\n%s", timeout, b)
}

func labDown(prefix string, stdout io.Writer) error {
	dir := labDir(prefix)
	if b, err := os.ReadFile(filepath.Join(dir, "appliance.pid")); err == nil {
		// A stale PID file may name a process that reused the PID: only one inside the lab's
		// box is the lab's appliance.
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && inNetns(pid, lab.Attach(prefix).NS(lab.HostBox)) {
			stopPID(pid)
		}
	}
	if err := lab.Attach(prefix).Close(); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	fmt.Fprintf(stdout, "lab %s is down: daemon stopped, namespaces removed\n", prefix)
	return nil
}

// inNetns says whether process pid runs in the named network namespace.
func inNetns(pid int, ns string) bool {
	var a, b syscall.Stat_t
	if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &a) != nil || syscall.Stat(filepath.Join("/run/netns", ns), &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// stopPID ends a process: SIGTERM, then SIGKILL if it is still there after a few seconds,
// and waits (bounded) until it is gone.
func stopPID(pid int) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	for i := 0; i < 100; i++ {
		if !alive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// alive says whether pid runs: a zombie (dead, not yet reaped by its parent) does not.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may hold spaces.
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

func labStatus(prefix string, stdout io.Writer) error {
	dir := labDir(prefix)
	b, err := os.ReadFile(filepath.Join(dir, "appliance.pid"))
	if err != nil {
		fmt.Fprintf(stdout, "lab %s is not up\n", prefix)
		return nil
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	state := "running"
	if !inNetns(pid, lab.Attach(prefix).NS(lab.HostBox)) {
		state = "NOT running (the firewall stays loaded; see the log)"
	}
	fmt.Fprintf(stdout, "lab %s: appliance PID %d %s\n  log: %s\n", prefix, pid, state, filepath.Join(dir, "appliance.log"))
	return nil
}
