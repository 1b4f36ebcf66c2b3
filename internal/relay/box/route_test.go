package box

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

const routeCfg = `
[relay]
endpoint = "192.0.2.40:51830"
public_key = "uEYQ0OdzrY4ogSEsn2UdpFrlUcnNiWpZZyk1RnOrBUM="
interface = "rlytst0"
`

// inNS runs fn on a thread in ns: netlink's calls open their sockets there.
func inNS(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig) //nolint:errcheck // the thread is locked; it goes back before it is unlocked
	fn()
}

func ipIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
	return string(out)
}

func parseCfg(t *testing.T, extra string) *config.Config {
	t.Helper()
	c, err := config.Parse("lab.toml", append(append([]byte{}, lab.Config...), extra...))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The voice route in a real kernel: the rule and table 110 while voice goes through the relay
// (and all_traffic's two rules), nothing of them when it goes direct, and another part's
// rule left alone.
func TestVoiceRoutes(t *testing.T) {
	name, ns := labtest.Netns(t, "rlyrt")
	ipIn(t, name, "link", "add", "rlytst0", "type", "veth", "peer", "name", "rlytst1")
	ipIn(t, name, "link", "set", "rlytst0", "up")
	ipIn(t, name, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")              // the lab config's LAN
	ipIn(t, name, "rule", "add", "fwmark", "0x4000/0x4000", "lookup", "102", "priority", "95") // the voice move's
	p := &Part{}
	p.cfg.Store(parseCfg(t, routeCfg))
	inNS(t, ns, func() {
		if err := p.setRoutes(true); err != nil {
			t.Fatal(err)
		}
	})
	rules, table := ipIn(t, name, "rule", "show"), ipIn(t, name, "route", "show", "table", "110")
	if !strings.Contains(rules, "90:\tfrom all fwmark 0x4000/0x4000 lookup 110") || !strings.Contains(table, "default dev rlytst0") {
		t.Errorf("voice through the relay: rules\n%s\ntable 110\n%s", rules, table)
	}
	if strings.Contains(rules, "1010:") {
		t.Errorf("all_traffic's rules without all_traffic:\n%s", rules)
	}
	p.cfg.Store(parseCfg(t, routeCfg+"all_traffic = true\n"))
	inNS(t, ns, func() {
		for range 2 { // the second changes nothing
			if err := p.setRoutes(true); err != nil {
				t.Fatal(err)
			}
		}
	})
	rules = ipIn(t, name, "rule", "show")
	for _, want := range []string{"1009:\tfrom all iif lan0 lookup main suppress_prefixlength 0", "1010:\tfrom all iif lan0 lookup 110"} {
		if strings.Count(rules, want) != 1 {
			t.Errorf("all_traffic: want one %q:\n%s", want, rules)
		}
	}
	inNS(t, ns, func() {
		if err := p.setRoutes(false); err != nil {
			t.Fatal(err)
		}
	})
	rules, table = ipIn(t, name, "rule", "show"), ipIn(t, name, "route", "show", "table", "110")
	if strings.Contains(rules, "lookup 110") || strings.Contains(rules, "1009:") || strings.TrimSpace(table) != "" {
		t.Errorf("voice direct: rules\n%s\ntable 110\n%s", rules, table)
	}
	if !strings.Contains(rules, "95:\tfrom all fwmark 0x4000/0x4000 lookup 102") {
		t.Errorf("another part's voice rule was removed:\n%s", rules)
	}
}

// A switch between the relay and direct deletes the PBX's flows with the trunks (they are
// NATed to the old path), and no other.
func TestFlushVoice(t *testing.T) {
	labtest.RequireRoot(t, "conntrack")
	name, ns := labtest.Netns(t, "rlyct")
	ct := conntrackIn(t, name)
	pbx, trunk, phone, pc := lab.PBX4, lab.Trunk4, "192.168.50.20", "192.168.50.30"
	insert := [][]string{
		{"-s", pbx, "-d", trunk, "-p", "udp", "--sport", "5060", "--dport", "5060"},  // the PBX's SIP to the trunk
		{"-s", pbx, "-d", trunk, "-p", "udp", "--sport", "9000", "--dport", "30000"}, // its RTP
		{"-s", trunk, "-d", "10.254.0.2", "-p", "udp", "--sport", "5062", "--dport", "5060", // the trunk's call, DNATed to the PBX
			"--reply-src", pbx, "--reply-dst", trunk, "--reply-port-src", "5060", "--reply-port-dst", "5062"},
		{"-s", pbx, "-d", phone, "-p", "udp", "--sport", "5060", "--dport", "5060"},                          // to a phone on the LAN: kept
		{"-s", pc, "-d", trunk, "-p", "udp", "--sport", "5060", "--dport", "5060"},                           // not the PBX: kept
		{"-s", pbx, "-d", trunk, "-p", "tcp", "--sport", "22", "--dport", "40000", "--state", "ESTABLISHED"}, // not voice: kept
	}
	for _, a := range insert {
		ct(append([]string{"-I", "-t", "120"}, a...)...)
	}
	c := parseCfg(t, "")
	var n uint
	inNS(t, ns, func() {
		var err error
		if n, err = flushVoice(c); err != nil {
			t.Fatal(err)
		}
	})
	left := ct("-L")
	if n != 3 || strings.Contains(left, "dport=30000") || strings.Contains(left, "dst=10.254.0.2") || strings.Count(left, "mark=") != 3 {
		t.Errorf("flushed %d, want the 3 voice flows; left:\n%s", n, left)
	}
}

// The sweeps after a switch to direct take only the voice flows still NATed to the tunnel's
// address; those already on a line's address stay (and the other way round).
func TestFlushStaleVoice(t *testing.T) {
	labtest.RequireRoot(t, "conntrack")
	name, ns := labtest.Netns(t, "rlyst")
	ct := conntrackIn(t, name)
	pbx, trunk := lab.PBX4, lab.Trunk4
	for _, a := range [][]string{
		{"-s", pbx, "-d", trunk, "-p", "udp", "--sport", "9000", "--dport", "30000", // through the tunnel
			"--reply-src", trunk, "--reply-dst", "10.254.0.2", "--reply-port-src", "30000", "--reply-port-dst", "9000"},
		{"-s", pbx, "-d", trunk, "-p", "udp", "--sport", "9002", "--dport", "30002", // direct, from the fixed line's address
			"--reply-src", trunk, "--reply-dst", lab.BoxWAN4, "--reply-port-src", "30002", "--reply-port-dst", "9002"},
	} {
		ct(append([]string{"-I", "-t", "120"}, a...)...)
	}
	c := parseCfg(t, routeCfg)
	flush := func(usingRelay bool) uint {
		var n uint
		inNS(t, ns, func() {
			var err error
			if n, err = flushStaleVoice(c, usingRelay); err != nil {
				t.Fatal(err)
			}
		})
		return n
	}
	if n, left := flush(false), ct("-L"); n != 1 || strings.Contains(left, "dst=10.254.0.2") || !strings.Contains(left, "dport=30002") {
		t.Errorf("direct: flushed %d, want the tunnel's flow only; left:\n%s", n, left)
	}
	if n, left := flush(true), ct("-L"); n != 1 || strings.Contains(left, "dport=30002") {
		t.Errorf("relay: flushed %d, want the direct flow; left:\n%s", n, left)
	}
}

// conntrackIn runs the conntrack tool in namespace name.
func conntrackIn(t *testing.T, name string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", name, "conntrack"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("conntrack %v: %v: %s", args, err, out)
		}
		return string(out)
	}
}
