package setup

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/netcfg"
)

func nftIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

// The setup state's table is replaced by the daemon's firewall owner in one transaction (the
// table is never deleted: there is no moment without it), and the setup state replaces a
// daemon's table the same way when a first config is put back.
func TestSetupFirewallHandover(t *testing.T) {
	ns, h := labtest.Netns(t, "su1fw")
	if err := applyFirewall(int(h), "lan0"); err != nil {
		t.Fatal(err)
	}
	got := nftIn(t, ns, "list", "table", "inet", netcfg.TableName)
	for _, want := range []string{`iifname "lan0" tcp dport 443`, `udp dport 67-68`, "policy drop", `comment "setup page from the LAN"`} {
		if !strings.Contains(got, want) {
			t.Fatalf("setup table lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "8443") || strings.Contains(got, "dport 22") {
		t.Fatalf("setup table opens more than the page:\n%s", got)
	}

	// Watch the ruleset's changes while the daemon's owner takes over. The monitor is ready
	// once it reports a table of our own.
	mon := exec.Command("ip", "netns", "exec", ns, "nft", "monitor")
	var out labtest.LogBuffer
	mon.Stdout, mon.Stderr = &out, &out
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mon.Process.Kill(); _ = mon.Wait() }()
	labtest.WaitFor(t, "nft monitor to report", 10*time.Second, func() bool {
		_ = exec.Command("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "su1probe").Run()
		_ = exec.Command("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "su1probe").Run()
		return strings.Contains(out.String(), "su1probe")
	})

	cfg, err := config.Parse("example", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	w, err := netcfg.NewOwner(netcfg.OwnerOptions{Firewall: netcfg.New(int(h)), StateDir: t.TempDir(), Check: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := w.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	got = nftIn(t, ns, "list", "table", "inet", netcfg.TableName)
	if strings.Contains(got, "setup page") || !strings.Contains(got, "chain blocklist") {
		t.Fatalf("the daemon's table did not replace the setup state's:\n%s", got)
	}
	labtest.WaitFor(t, "the monitor to see the daemon's ruleset", 10*time.Second, func() bool {
		return strings.Contains(out.String(), "chain inet appliance blocklist")
	})
	if strings.Contains(out.String(), "delete table inet "+netcfg.TableName) {
		t.Fatalf("the table was deleted on the way (a moment without a firewall):\n%s", out.String())
	}
	cancel()
	<-done

	// Back to the setup state (the first config was not confirmed): the daemon's chains go.
	if err := applyFirewall(int(h), "lan0"); err != nil {
		t.Fatal(err)
	}
	got = nftIn(t, ns, "list", "table", "inet", netcfg.TableName)
	if !strings.Contains(got, "setup page") || strings.Contains(got, "chain blocklist") || strings.Contains(got, "chain dnat") {
		t.Fatalf("the setup state did not replace the daemon's table:\n%s", got)
	}
}
