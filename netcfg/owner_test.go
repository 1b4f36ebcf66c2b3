package netcfg

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// runOwner starts an owner on fw with the lab config, keeping state in dir.
func runOwner(t *testing.T, fw *Firewall, dir string, cfg *config.Config, bus *events.Bus) *Owner {
	w, _ := runOwnerStop(t, fw, dir, cfg, bus)
	return w
}

// runOwnerStop is runOwner that also returns how to stop the owner before the test ends.
func runOwnerStop(t *testing.T, fw *Firewall, dir string, cfg *config.Config, bus *events.Bus) (*Owner, func()) {
	t.Helper()
	w, err := NewOwner(OwnerOptions{Firewall: fw, StateDir: dir, Bus: bus, Check: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	if err := w.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return w, stop
}

func labConfig(t *testing.T) *config.Config { return mustParse(t, "lab.toml", lab.Config) }

// kernelHas reports whether the kernel's blocklist has p, and its time left.
func kernelHas(t *testing.T, fw *Firewall, p string) (bool, time.Duration) {
	t.Helper()
	list, err := fw.Blocklist()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range list {
		if b.Prefix.String() == p {
			return true, b.Expires
		}
	}
	return false, 0
}

func pfx(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

// A permanent manual block stays permanent through a detector's shorter block, a feed that
// lists it and then drops it, a reload and a restart of the owner.
func TestOwnerPermanentManualBlockNeverShortened(t *testing.T) {
	_, fw := testNS(t, "own")
	dir := t.TempDir()
	cfg := labConfig(t)
	w, stop := runOwnerStop(t, fw, dir, cfg, nil)
	const a = "198.18.7.7"
	if _, err := w.Block(BlockRequest{Prefix: pfx(a), Source: SourceManual, By: "root (cli)", Reason: "seen in the logs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Block(BlockRequest{Prefix: pfx(a), Source: SourceSIPGuard, By: "scanner", Reason: "scanner", For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetFeed("community", []netip.Prefix{pfx(a), pfx("198.18.8.8")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetFeed("community", []netip.Prefix{pfx("198.18.8.8")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := w.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		in, left := kernelHas(t, fw, a+"/32")
		if !in || left != 0 {
			t.Fatalf("%s: %s in the kernel %v with %s left, want permanent", when, a, in, left)
		}
		e, ok := w.Lookup(pfx(a))
		if !ok || !e.Until().IsZero() || len(e.Claims) != 2 {
			t.Fatalf("%s: entry %+v, want a permanent entry with the manual and the sipguard claim", when, e)
		}
	}
	check("after a detector's block, a feed refresh and a reload")
	// A restart: a new owner on the same state directory, on a kernel that lost the table.
	stop()
	_, fw2 := testNS(t, "own2")
	w2 := runOwner(t, fw2, dir, cfg, nil)
	w, fw = w2, fw2
	check("after a restart on an empty kernel")
	if in, _ := kernelHas(t, fw, "198.18.8.8/32"); !in {
		t.Fatal("the feed's entry was not restored from the saved list")
	}
	if _, err := w.Unblock(pfx(a), "root (cli)"); err != nil {
		t.Fatal(err)
	}
	if in, _ := kernelHas(t, fw, a+"/32"); in {
		t.Fatal("unblocked, but still in the kernel")
	}
}

// What the box depends on is refused from every path, naming the rule; a feed that lists it
// is loaded without it; networks wider than the limit need force.
func TestOwnerProtected(t *testing.T) {
	_, fw := testNS(t, "prot")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.54\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(lab.Config), "[notify]", "[notify]\nserver = \"192.0.2.25:587\"\nfrom = \"box@example.com\"\nto = [\"it@example.com\"]", 1)
	cfg := mustParse(t, "lab.toml", []byte(src))
	w, err := NewOwner(OwnerOptions{Firewall: fw, ResolvConf: resolv})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	if err := w.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	for addr, why := range map[string]string{
		"192.0.2.53":     "wan probe target",
		"198.51.100.200": "wan probe target",
		"198.51.100.1":   "gateway of uplink",
		"203.0.113.1":    "gateway of uplink",
		"192.0.2.54":     "DNS server",
		"192.0.2.25":     "SMTP server",
		lab.Trunk4:       "trusted SIP peer",
		lab.Admin4:       "admin network",
		"192.168.50.20":  "office LAN",
		"192.0.2.10/31":  "trusted SIP peer",
		"2001:db8:f1::1": "gateway of uplink",
		"2001:db8:1::30": "admin network",
	} {
		_, err := w.Block(BlockRequest{Prefix: pfx(addr), Source: SourceManual, By: "test", Force: true})
		var pe *ProtectedError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), why) {
			t.Errorf("block %s: %v, want refused as %q", addr, err, why)
		}
	}
	res, err := w.SetFeed("f", []netip.Prefix{pfx("192.0.2.53"), pfx("198.18.1.1"), pfx("10.0.0.0/8")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 1 || len(res.Refused) != 2 {
		t.Fatalf("feed: %+v, want 1 entry and 2 refused", res)
	}
	if in, _ := kernelHas(t, fw, "192.0.2.53/32"); in {
		t.Fatal("a feed blocked a wan probe target")
	}
	for _, p := range []string{"0.0.0.0/1", "10.0.0.0/8", "2001:db8::/16"} {
		if _, err := w.Block(BlockRequest{Prefix: pfx(p), Source: SourceManual, By: "test"}); !errors.Is(err, ErrTooWide) {
			t.Errorf("block %s: %v, want too wide", p, err)
		}
	}
	if _, err := w.Block(BlockRequest{Prefix: pfx("0.0.0.0/0"), Source: SourceManual, By: "test"}); !errors.Is(err, ErrTooWide) {
		t.Errorf("block 0.0.0.0/0: %v, want too wide", err)
	}
	if _, err := w.Block(BlockRequest{Prefix: pfx("10.0.0.0/8"), Source: SourceManual, By: "test", Force: true}); err != nil {
		t.Errorf("forced block of 10.0.0.0/8: %v", err)
	}
	if in, _ := kernelHas(t, fw, "10.0.0.0/8"); !in {
		t.Error("the forced /8 is not in the kernel")
	}
}

// Someone flushing the ruleset or deleting the table or an element by hand: the owner puts it
// all back, with an event that says what it found.
func TestOwnerRepairsDrift(t *testing.T) {
	ns, fw := testNS(t, "drift")
	bus := events.New(100)
	ch, unsub := bus.Subscribe(100)
	defer unsub()
	w := runOwner(t, fw, t.TempDir(), labConfig(t), bus)
	if _, err := w.Block(BlockRequest{Prefix: pfx("198.18.9.9"), Source: SourceManual, By: "test", For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Block(BlockRequest{Prefix: pfx("198.18.0.0/24"), Source: SourceManual, By: "test"}); err != nil {
		t.Fatal(err)
	}
	want := listing(t, ns)
	waitDrift := func(what string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case e := <-ch:
				if e.Kind == "firewall.drift" {
					t.Logf("%s: %s", what, e.Message)
					return
				}
			case <-deadline:
				t.Fatalf("%s: no repair", what)
			}
		}
	}
	for _, c := range [][]string{
		{"flush", "ruleset"},
		{"delete", "table", "inet", TableName},
		{"delete", "element", "inet", TableName, SetBlock4, "{ 198.18.9.9 }"},
		{"delete", "rule", "inet", TableName, "input", "handle", firstHandle(t, ns, "input")},
	} {
		nft(t, ns, c...)
		waitDrift(strings.Join(c, " "))
		labtest.WaitFor(t, "the ruleset back as it was", 5*time.Second, func() bool {
			return stripCounters(listing(t, ns)) == stripCounters(want)
		})
	}
	if st := w.State(); st.Repairs != 4 {
		t.Errorf("%d repairs counted, want 4", st.Repairs)
	}
}

// Without anyone else touching the kernel, the owner never sees drift: its own commits are
// counted exactly.
func TestOwnerOwnWritesAreNotDrift(t *testing.T) {
	_, fw := testNS(t, "gen")
	w := runOwner(t, fw, "", labConfig(t), nil)
	var ps []netip.Prefix
	for i := range 10000 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32))
	}
	if _, err := w.SetFeed("big", ps, time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := w.Block(BlockRequest{Prefix: pfx(fmt.Sprintf("198.19.0.%d", i)), Source: SourceSIPGuard, By: "test", For: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SetConfig(labConfig(t)); err != nil {
		t.Fatal(err)
	}
	gen, err := fw.Generation()
	if err != nil {
		t.Fatal(err)
	}
	if st := w.State(); st.Generation != gen || st.Repairs != 0 {
		t.Fatalf("owner's generation %d (repairs %d), kernel's %d", st.Generation, st.Repairs, gen)
	}
	if st := w.State(); st.Kernel.Addrs4 != 10020 {
		t.Fatalf("kernel counts %+v, want 10020 addresses", st.Kernel)
	}
	// Every one of them is in the kernel, found by key; one never blocked is not.
	found, err := fw.Lookup(append(ps, pfx("198.19.0.0"), pfx("203.0.113.99")))
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 10001 {
		t.Fatalf("lookup found %d entries, want 10001", len(found))
	}
	if b := found[pfx("198.19.0.0")]; b.Expires < 59*time.Minute || b.Expires > time.Hour {
		t.Fatalf("a 1h block has %s left", b.Expires)
	}
}

func firstHandle(t *testing.T, ns, chain string) string {
	out := nft(t, ns, "-a", "list", "chain", "inet", TableName, chain)
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "# handle "); i >= 0 && strings.Contains(l, "counter") {
			return strings.TrimSpace(l[i+len("# handle "):])
		}
	}
	t.Fatalf("no rule in chain %s:\n%s", chain, out)
	return ""
}

var (
	countersRE = regexp.MustCompile(`counter packets [0-9]+ bytes [0-9]+`)
	timeoutRE  = regexp.MustCompile(` timeout [0-9hms.]+`)
)

// stripCounters hides what moves by itself: counters, and the timeout a repaired element is
// written with (the time it had left).
func stripCounters(s string) string {
	return timeoutRE.ReplaceAllString(countersRE.ReplaceAllString(s, "counter"), " timeout")
}

// A restart on a kernel that kept a blocklist too big to read back (a crash, kill -9): the
// owner writes it again once at start, then counts its own writes right and stays quiet,
// even though the kernel does not move the generation for an add of an element it has.
func TestOwnerQuietAfterRestartWithBigList(t *testing.T) {
	_, fw := testNS(t, "quiet")
	dir := t.TempDir()
	cfg := labConfig(t)
	w, stop := runOwnerStop(t, fw, dir, cfg, nil)
	var ps []netip.Prefix
	for i := range maxDump + 5000 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32))
	}
	ps = append(ps, pfx("198.19.0.0/24"))
	if _, err := w.SetFeed("big", ps, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Block(BlockRequest{Prefix: pfx("198.19.1.1"), Source: SourceSIPGuard, By: "test", For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	stop()
	w = runOwner(t, fw, dir, cfg, nil)
	labtest.WaitFor(t, "the first check after the restart", 20*time.Second, func() bool { return w.State().Checks >= 1 })
	st0 := w.State()
	labtest.WaitFor(t, "5 more checks", 30*time.Second, func() bool { return w.State().Checks >= st0.Checks+5 })
	st := w.State()
	if st.Rewrites != st0.Rewrites || st.Repairs != 0 {
		t.Fatalf("%d rewrites of the whole blocklist in %d checks after the restart had settled (%d repairs: %s)",
			st.Rewrites-st0.Rewrites, st.Checks-st0.Checks, st.Repairs, st.LastRepair)
	}
	gen, err := fw.Generation()
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != gen || st.Kernel.Total() != len(ps)+1 {
		t.Fatalf("owner's generation %d, kernel's %d; %d entries counted, want %d", st.Generation, gen, st.Kernel.Total(), len(ps)+1)
	}
}

// A DNS re-resolution that lands during a reload or a confirm-or-revert revert puts its
// addresses on top of the config given last, never back on the one in force when the
// addresses changed.
func TestOwnerResolutionRacingReload(t *testing.T) {
	ns, fw := testNS(t, "resrace")
	w := runOwner(t, fw, "", labConfig(t), nil)
	newer := mustParse(t, "lab.toml", []byte(strings.Replace(string(lab.Config),
		`networks = ["192.0.2.30", "2001:db8:1::30"]`, `networks = ["192.0.2.30", "2001:db8:1::30", "198.51.100.77"]`, 1)))
	testHookResolved = func() {
		testHookResolved = nil
		if err := w.SetConfig(newer); err != nil { // the reload, between the change and its apply
			t.Error(err)
		}
	}
	t.Cleanup(func() { testHookResolved = nil })
	if err := w.SetResolved(AdminKey, []netip.Addr{netip.MustParseAddr("198.51.100.88")}); err != nil {
		t.Fatal(err)
	}
	set := nft(t, ns, "list", "set", "inet", TableName, "admin4")
	for _, a := range []string{"198.51.100.77", "198.51.100.88", "192.0.2.30"} {
		if !strings.Contains(set, a) {
			t.Errorf("admin4 lacks %s: the reload's network and the resolved address must both be in force:\n%s", a, set)
		}
	}
}
