// Command vmlab runs the lab's scenarios against the appliance's arm64 VM image under qemu, its NICs bridged into the namespace lab where the box would be (run by scripts/vm-lab).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
)

// runner holds what every scenario uses.
type runner struct {
	ctx  context.Context
	l    *lab.Lab
	vm   *VM
	work string
	efi  string // UEFI firmware for qemu
	// password of gokrazy's web UI (its log endpoint), "" if unknown
	password string
	timeout  time.Duration      // bound of each wait
	pbx      *sitelab.SIPServer // the PBX's SIP answerer while on (pbxSIP)
	// diagnosed: the serial console's end was shown (once, at the first failure)
	diagnosed bool
}

// result is one scenario's verdict and what was seen.
type result struct {
	ok   bool
	seen string
}

func pass(format string, a ...any) result { return result{true, fmt.Sprintf(format, a...)} }
func fail(format string, a ...any) result { return result{false, fmt.Sprintf(format, a...)} }

func main() {
	img := flag.String("image", "", "the VM image (scripts/build-image --target vm with the lab's config)")
	openImg := flag.String("open-image", "", "the image for the scanner scenario: the lab's config with pbx.allow_sip_from_anywhere\n"+
		"(sipguard sees only the SIP the firewall lets through to the PBX); \"\" runs it on -image")
	efi := flag.String("efi", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "UEFI firmware for qemu")
	work := flag.String("work", "", "directory for qemu's serial log, monitor socket and PID file")
	timeout := flag.Duration("timeout", 4*time.Minute, "bound of each wait (boot, failover, failback...)")
	passwordFile := flag.String("password-file", "", "gokrazy's password, to read the appliance's log on a failure")
	cleanup := flag.Bool("cleanup", false, "only remove what a killed run left (qemu, the vml-* namespaces, the taps)")
	flag.Parse()
	if *work == "" {
		*work = os.TempDir()
	}
	if *cleanup {
		if err := Cleanup(*work); err != nil {
			fmt.Fprintln(os.Stderr, "vm-lab: cleanup:", err)
			os.Exit(1)
		}
		return
	}
	if *img == "" {
		fmt.Fprintln(os.Stderr, "vm-lab: -image is required")
		os.Exit(2)
	}
	password := ""
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vm-lab:", err)
			os.Exit(2)
		}
		password = strings.TrimSpace(string(b))
	}
	os.Exit(run(*img, *openImg, *efi, *work, password, *timeout))
}

func run(img, openImg, efi, work, password string, timeout time.Duration) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.New(Prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vm-lab:", err, "(a leftover lab? scripts/vm-lab clears it)")
		return 1
	}
	r := &runner{ctx: ctx, l: l, work: work, efi: efi, password: password, timeout: timeout}
	defer func() {
		r.pbxSIP(false)
		r.vm.Stop()
		if err := errors.Join(l.Close(), Cleanup(work)); err != nil {
			fmt.Fprintln(os.Stderr, "vm-lab: cleanup:", err)
		}
	}()
	if r.vm, err = StartVM(l, img, efi, work, "lab"); err != nil {
		fmt.Fprintln(os.Stderr, "vm-lab:", err)
		return 1
	}
	// The trunk answers every request (the PBX's OPTIONS in the failovers), as in sitelab.
	trunk, err := sitelab.StartSIPServer(l, lab.HostTrunk, lab.Trunk4+":5060")
	if err != nil {
		fmt.Fprintln(os.Stderr, "vm-lab:", err)
		return 1
	}
	defer trunk.Close()
	scenarios := []struct {
		name string
		fn   func() result
	}{
		{"boot", r.boot},
		{"firewall", r.firewall},
		{"carrier-failover", r.carrierFailover},
		{"silent-failover", r.silentFailover},
		{"reply-routing", r.replyRouting},
		{"https-page", r.httpsPage},
		{"scanner-blocked", func() result { return r.scanner(openImg) }},
	}
	passed := 0
	booted := false
	for i, s := range scenarios {
		var res result
		switch {
		case ctx.Err() != nil:
			res = fail("not run: interrupted")
		case i > 0 && !booted:
			res = fail("not run: the VM did not boot")
		default:
			res = s.fn()
		}
		if i == 0 {
			booted = res.ok
		}
		verdict := "FAIL"
		if res.ok {
			verdict, passed = "PASS", passed+1
		}
		fmt.Printf("vm-lab: %s %s (%s)\n", s.name, verdict, oneLine(res.seen))
		if !res.ok {
			r.diagnose()
		}
	}
	fmt.Printf("vm-lab: %d/%d PASS\n", passed, len(scenarios))
	if passed != len(scenarios) {
		return 1
	}
	return 0
}

// diagnose writes the end of the serial console and of the appliance's log (gokrazy's log
// endpoint on the LAN, port 8080) to stderr, once, at the first failure.
func (r *runner) diagnose() {
	if r.diagnosed {
		return
	}
	r.diagnosed = true
	if b, err := os.ReadFile(r.vm.Serial); err == nil {
		fmt.Fprintf(os.Stderr, "--- last lines of the serial console (%s):\n%s\n", r.vm.Serial, strings.Join(tail(string(b), 15), "\n"))
	}
	if r.password == "" {
		return
	}
	// The log is a stream (server-sent events): take what arrives in a few seconds.
	c := client(r.l, lab.HostPhone)
	c.Timeout = 5 * time.Second
	resp, err := c.Get("http://gokrazy:" + r.password + "@" + lab.BoxLAN4 + ":8080/log?path=/user/appliance&stream=stderr")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20)) // ends with the timeout's error
	path := filepath.Join(r.work, "appliance.log")
	_ = os.WriteFile(path, b, 0o600)
	fmt.Fprintf(os.Stderr, "--- last lines of the appliance's log (%s):\n%s\n", path, strings.Join(tail(string(b), 25), "\n"))
}

// oneLine keeps a scenario's line one line and bounded.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}
