package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/officeedge/appliance/internal/lab"
)

// Prefix names the lab's namespaces (vml-box, vml-fttc...): unique to this program, so it
// never meets another test's lab.
const Prefix = "vml"

// nic is one of the VM's virtio NICs: its tap in the root namespace at first, the box
// interface (the veth end) it is bridged to in the lab's box namespace, and qemu's netdev id
// (for set_link). In qemu's order, so the guest names them eth0, eth1, eth2.
type nic struct{ tap, boxIf, netdev, mac string }

var nics = []nic{
	{"vmllan", lab.BoxLANIf, "lan", "52:54:00:5e:00:01"},
	{"vmlfttc", lab.BoxWANIf, "fttc", "52:54:00:5e:00:02"},
	{"vmllte", lab.BoxLTEIf, "lte", "52:54:00:5e:00:03"},
}

// VM is the appliance image running under qemu, its NICs joined to the lab.
type VM struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when qemu exited
	Work    string
	Serial  string
	monitor string
}

// pidFile is where qemu writes its PID, for the cleanup of a killed run.
func pidFile(work string) string { return filepath.Join(work, "qemu.pid") }

// StartVM makes the taps, boots img under qemu (UEFI firmware efi) with its NICs on them,
// then moves the taps into the lab's box namespace and bridges each to the box's veth end
// there: the lab's hosts stay as they are, and the box namespace is only three switches.
// The taps are made before qemu so qemu (in the root namespace) opens them by name; they
// are moved after, because a tap keeps its queue (qemu's file) across namespaces.
// Its serial console goes to work/serial-TAG.log.
func StartVM(l *lab.Lab, img, efi, work, tag string) (*VM, error) {
	v := &VM{Work: work, Serial: filepath.Join(work, "serial-"+tag+".log"), monitor: filepath.Join(work, "monitor.sock"), done: make(chan struct{})}
	for _, n := range nics {
		if err := sh("ip", "tuntap", "add", "dev", n.tap, "mode", "tap"); err != nil {
			return v, err
		}
		if err := sh("ip", "link", "set", n.tap, "up"); err != nil {
			return v, err
		}
	}
	_ = os.Remove(v.monitor)
	args := []string{"-machine", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
		"-bios", efi, "-drive", "file=" + img + ",format=raw,if=virtio"}
	for _, n := range nics {
		// romfile=: no PXE option ROM (efi-virtio.rom), which the boot does not need.
		args = append(args, "-netdev", "tap,id="+n.netdev+",ifname="+n.tap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev="+n.netdev+",mac="+n.mac+",romfile=")
	}
	args = append(args, "-serial", "file:"+v.Serial, "-monitor", "unix:"+v.monitor+",server,nowait",
		"-display", "none", "-pidfile", pidFile(work))
	logf, err := os.Create(filepath.Join(work, "qemu-"+tag+".log"))
	if err != nil {
		return v, fmt.Errorf("vmlab: qemu log: %w", err)
	}
	defer logf.Close()
	v.cmd = exec.Command("qemu-system-aarch64", args...)
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := v.cmd.Start(); err != nil {
		return v, fmt.Errorf("vmlab: start qemu: %w", err)
	}
	go func() { _ = v.cmd.Wait(); close(v.done) }()
	// qemu has opened every tap once each has a carrier (a tap without a reader has none).
	if err := v.waitFor(30*time.Second, "qemu to open the taps", func() bool {
		for _, n := range nics {
			b, err := os.ReadFile("/sys/class/net/" + n.tap + "/carrier")
			if err != nil || strings.TrimSpace(string(b)) != "1" {
				return false
			}
		}
		return true
	}); err != nil {
		return v, err
	}
	box := lab.HostBox
	// The box namespace only switches frames: no addresses, no IPv6 of its own on the way.
	if _, err := l.Run(box, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		return v, err
	}
	for _, n := range nics {
		br := "br-" + n.netdev
		if err := sh("ip", "link", "set", n.tap, "netns", l.NS(box)); err != nil {
			return v, err
		}
		for _, a := range [][]string{
			{"link", "add", "name", br, "type", "bridge", "mcast_snooping", "0"},
			{"link", "set", n.boxIf, "master", br},
			{"link", "set", n.tap, "master", br},
			{"link", "set", n.tap, "up"},
			{"link", "set", br, "up"},
		} {
			if _, err := l.Run(box, append([]string{"ip"}, a...)...); err != nil {
				return v, err
			}
		}
	}
	return v, nil
}

// Exited says whether qemu has exited.
func (v *VM) Exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it holds, qemu exits or d passes.
func (v *VM) waitFor(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return nil
		}
		if v.Exited() {
			return fmt.Errorf("vmlab: qemu exited while waiting for %s (see %s)", what, v.Serial)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vmlab: no %s within %s", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// SetLink sets the carrier of the VM's NIC on netdev (lan, fttc, lte) as the guest sees it:
// qemu's monitor command, the VM's equivalent of a cable pulled (sitelab's Carrier sets a
// veth down, which the tap on the bridge would not pass on).
func (v *VM) SetLink(netdev string, up bool) error {
	state := "off"
	if up {
		state = "on"
	}
	c, err := net.DialTimeout("unix", v.monitor, 5*time.Second)
	if err != nil {
		return fmt.Errorf("vmlab: qemu monitor: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "set_link %s %s\n", netdev, state); err != nil {
		return fmt.Errorf("vmlab: qemu monitor: %w", err)
	}
	// The monitor echoes the command and prompts again once done; anything else is its error.
	r := bufio.NewReader(c)
	var seen strings.Builder
	for seen.Len() < 4096 {
		line, err := r.ReadString(' ')
		seen.WriteString(line)
		if err != nil {
			return fmt.Errorf("vmlab: qemu monitor: %w (read %q)", err, seen.String())
		}
		if strings.Count(seen.String(), "(qemu)") >= 2 {
			break
		}
	}
	if out := seen.String(); strings.Contains(out, "not found") || strings.Contains(out, "rror") {
		return fmt.Errorf("vmlab: qemu monitor: set_link %s %s: %q", netdev, state, out)
	}
	return nil
}

// Stop ends qemu (SIGTERM, then SIGKILL) and waits for it, bounded.
func (v *VM) Stop() {
	if v == nil || v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.done
	}
	_ = os.Remove(pidFile(v.Work))
}

// Unwire removes the taps and the bridges from the box namespace once qemu has stopped, so
// another VM can take the box's place.
func Unwire(l *lab.Lab) error {
	var errs []error
	for _, n := range nics {
		_, _ = l.Run(lab.HostBox, "ip", "link", "del", n.tap) // gone with qemu unless persistent
		for _, a := range [][]string{{"link", "set", n.boxIf, "nomaster"}, {"link", "del", "br-" + n.netdev}} {
			if _, err := l.Run(lab.HostBox, append([]string{"ip"}, a...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes what a killed run may have left: qemu (by the PID in its PID file, if
// that process is still a qemu), the lab's namespaces, the taps.
func Cleanup(work string) error {
	var errs []error
	if b, err := os.ReadFile(pidFile(work)); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if pid > 1 && strings.HasPrefix(string(comm), "qemu-system") {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(200 * time.Millisecond)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = os.Remove(pidFile(work))
	}
	if err := lab.Attach(Prefix).Close(); err != nil {
		errs = append(errs, err)
	}
	for _, n := range nics {
		if _, err := os.Stat("/sys/class/net/" + n.tap); err == nil {
			if err := sh("ip", "link", "del", n.tap); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func sh(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("vmlab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
