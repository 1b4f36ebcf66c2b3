package sipguard_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// TestDaemonAndCLI runs the real `appliance run` in the box namespace: the daemon's
// sipguard blocks a scanner, `appliance blocked` shows why, since when, until when and how
// many packets the kernel dropped; the block survives the kernel table being wiped and the
// daemon restarting; without a daemon the CLI falls back to the kernel's list.
func TestDaemonAndCLI(t *testing.T) {
	t.Parallel()
	labtest.RequireRoot(t, "nft", "kamailio", "sipp", "svmap", "svwar", "svcrack", "timeout")
	dir := t.TempDir()
	bin, err := build.Daemon(dir)
	if err != nil {
		t.Fatal(err)
	}
	l := labtest.New(t)
	text := strings.Replace(string(lab.Config), "[pbx]\n", "[pbx]\nallow_sip_from_anywhere = true\n", 1)
	text = strings.Replace(text, "[sipguard]\n", "[sipguard]\nevidence_after = \"1s\"\n", 1)
	conf := filepath.Join(dir, "appliance.toml")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "control.sock")
	start := func() *exec.Cmd {
		cmd, err := l.Start(lab.HostBox, bin, "run", "--config", conf, "--state", filepath.Join(dir, "state"), "--control", sock)
		if err != nil {
			t.Fatal(err)
		}
		labtest.WaitFor(t, "the daemon to start", 30*time.Second, func() bool { return strings.Contains(l.Output(cmd), "appliance running") })
		return cmd
	}
	daemon := start()
	blocked := func() (string, string) {
		cmd := l.Command(lab.HostBox, bin, "blocked", "--control", sock)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("appliance blocked: %v\n%s", err, errOut.String())
		}
		return out.String(), errOut.String()
	}
	c, err := l.DialUDP(lab.HostAttacker, lab.Attacker4+":5060", lab.BoxWAN4+":5060")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A write can fail once with "connection refused" (the PBX has no SIP listener in this
	// test and answered the first packet with an ICMP error): count only packets sent.
	send := func(ua string) bool {
		_, err := c.Write([]byte(options(lab.Attacker4+":5060", "cli-"+ua, ua)))
		return err == nil
	}
	var out string
	row := regexp.MustCompile(`192\.0\.2\.66\s+sipguard\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\s+(\d+)\s+scanner`)
	// The scanner keeps sending, as scanners do: a packet that arrived before sipguard's
	// capture was open (on a loaded machine) is not the only one.
	labtest.WaitFor(t, "the scanner in `appliance blocked`", 30*time.Second, func() bool {
		send("sipcli/v1.8")
		out, _ = blocked()
		return row.MatchString(out)
	})
	m := row.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("appliance blocked:\n%s", out)
	}
	since, _ := time.Parse("2006-01-02 15:04:05", m[1])
	until, _ := time.Parse("2006-01-02 15:04:05", m[2])
	// One UDP packet proves nothing about its source: the short unproven block.
	if d := until.Sub(since); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("blocked from %s until %s, want the unproven 10 minutes", m[1], m[2])
	}
	// The kernel counts what it drops from that source.
	for sent := 0; sent < 5; {
		if send("Yealink") {
			sent++
		}
	}
	defer func() {
		if t.Failed() {
			k, _ := l.Run(lab.HostBox, "nft", "list", "table", "inet", "appliance")
			t.Logf("appliance blocked:\n%s\nkernel:\n%s", out, k)
		}
	}()
	labtest.WaitFor(t, "5 dropped packets", 5*time.Second, func() bool {
		out, _ = blocked()
		m := row.FindStringSubmatch(out)
		n, _ := strconv.Atoi(m[3])
		return n >= 5
	})
	t.Logf("appliance blocked:\n%s", out)

	// Daemon down: the CLI shows the kernel's list and says so.
	if err := l.Stop(daemon); err != nil {
		t.Logf("stop: %v", err)
	}
	out, errOut := blocked()
	if !strings.Contains(out, "192.0.2.66 ") || !strings.Contains(errOut, "kernel's list") {
		t.Errorf("fallback listing:\n%s\n%s", out, errOut)
	}
	// A reboot loses the kernel table; the restarted daemon puts the block back.
	if _, err := l.Run(lab.HostBox, "nft", "delete", "table", "inet", "appliance"); err != nil {
		t.Fatal(err)
	}
	daemon = start()
	labtest.WaitFor(t, "the block restored", 10*time.Second, func() bool {
		out, _ = blocked()
		return row.MatchString(out)
	})

	// Unblocked by hand while the daemon is down: it must not come back at the next start.
	if err := l.Stop(daemon); err != nil {
		t.Logf("stop: %v", err)
	}
	if out, err := l.Run(lab.HostBox, bin, "unblock", lab.Attacker4, "--control", sock, "--state", filepath.Join(dir, "state")); err != nil {
		t.Fatalf("unblock: %v\n%s", err, out)
	}
	if _, err := l.Run(lab.HostBox, "nft", "delete", "table", "inet", "appliance"); err != nil {
		t.Fatal(err)
	}
	daemon = start()
	defer l.Stop(daemon)
	if out, _ = blocked(); strings.Contains(out, "192.0.2.66") {
		t.Errorf("an address unblocked while the daemon was down came back:\n%s", out)
	}
}
