package kernelfeat

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/internal/lab"
)

func TestMissing(t *testing.T) {
	fs := []Feature{{Name: "a", OK: true}, {Name: "b", Consequence: "no b"}, {Name: "c", OK: true}}
	m := Missing(fs)
	if len(m) != 1 || m[0].Name != "b" {
		t.Fatalf("Missing = %+v, want only b", m)
	}
}

// TestDetectAgreesWithTools runs the probes in a fresh network namespace of the real kernel and
// checks each verdict against what the standard tools (nft, conntrack, ip) find there, and that
// the probes leave nothing behind.
func TestDetectAgreesWithTools(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("kernelfeat: this test needs root (network namespaces, nftables)")
	}
	for _, tool := range []string{"nft", "conntrack", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("kernelfeat: %s not installed (scripts/apt-packages.txt)", tool)
		}
	}
	name := lab.Unique(t) + "-kf"
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name) // also switches this thread into it
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = netns.Set(orig)
		ns.Close()
		_ = netns.DeleteNamed(name)
	}()

	got := map[string]Feature{}
	for _, f := range Detect() {
		got[f.Name] = f
		if !f.OK && f.Consequence == "" {
			t.Errorf("%s missing without a consequence line", f.Name)
		}
	}
	inNS := func(args ...string) error {
		out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
		if err != nil {
			t.Logf("%v: %v: %s", args, err, strings.TrimSpace(string(out)))
		}
		return err
	}
	nftTakes := func(rule string) bool {
		defer inNS("nft", "delete", "table", "inet", "kftest")
		return inNS("nft", "add table inet kftest; add chain inet kftest c; add rule inet kftest c "+rule) == nil
	}
	want := map[string]bool{
		"nf_tables":         inNS("nft", "list", "ruleset") == nil,
		"nft ct":            nftTakes("ct state established accept"),
		"nft limit":         nftTakes("limit rate 10/second burst 20 packets accept"),
		"nft log":           nftTakes("log"),
		"nft queue":         nftTakes("queue num 65531 bypass"),
		"nft nat":           nftTakes("masquerade"),
		"conntrack netlink": inNS("conntrack", "-C") == nil,
		"policy routing":    inNS("ip", "-4", "rule", "list") == nil,
		"wireguard":         inNS("ip", "link", "add", "kfwg", "type", "wireguard") == nil,
	}
	for n, w := range want {
		f, ok := got[n]
		if !ok {
			t.Errorf("Detect reports nothing about %q", n)
			continue
		}
		if f.OK != w {
			t.Errorf("%s: Detect says present=%v (%s), the tools say %v", n, f.OK, f.Detail, w)
		}
	}
	for _, n := range []string{"NFLOG", "NFQUEUE", "packet sockets", "nft dynamic sets"} {
		if _, ok := got[n]; !ok {
			t.Errorf("Detect reports nothing about %q", n)
		}
	}
	out, err := exec.Command("ip", "netns", "exec", name, "nft", "list", "tables").CombinedOutput()
	if err != nil || strings.Contains(string(out), probeTable) {
		t.Errorf("probe table left behind (err %v): %s", err, out)
	}
}
