package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/netcfg"
)

// inNS runs fn on a thread in ns (sockets made there stay in it).
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	defer netns.Set(orig) //nolint:errcheck // the thread is locked and ends with the test's goroutine otherwise
	return fn()
}

// shareLab is one office's block sharing on a real listener and the relay's real firewall
// owner, in a namespace of its own: the relay's tunnel address 10.254.0.1 and the box's
// 10.254.0.2 on a veth standing in for voice0.
type shareLab struct {
	ns    netns.NsHandle
	owner *netcfg.Owner
	fw    *netcfg.Firewall
}

func newShareLab(t *testing.T) *shareLab {
	name, ns := labtest.Netns(t, "share")
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "shr0", "type", "veth", "peer", "name", "shr1"},
		{"link", "set", "shr1", "up"},
		{"addr", "add", "10.254.0.1/30", "dev", "shr0"},
		{"addr", "add", "10.254.0.2/32", "dev", "shr0"},
		{"link", "set", "shr0", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	c, err := ParseConfig("relay.toml", []byte(`public_interface = "shpub0"
admin_networks = ["203.0.113.200/32"]
[office.hq]
public_key = "`+pubKey(t)+`"
tunnel = "10.254.0.0/30"
trunk_networks = ["192.0.2.0/28"]
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Firewall()
	if err != nil {
		t.Fatal(err)
	}
	owner, err := netcfg.NewOwner(netcfg.OwnerOptions{Firewall: netcfg.New(int(ns)), StateDir: t.TempDir(), NoReplyMarks: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = owner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	if err := owner.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = listenShare(c.Office["hq"].Relay()); return err }); err != nil {
		t.Fatal(err)
	}
	s := &shareServer{office: "hq", box: c.Office["hq"].Box(), store: owner, log: slog.New(slog.DiscardHandler)}
	served := make(chan struct{})
	go func() { defer close(served); _ = serveShare(ctx, ln, s) }()
	t.Cleanup(func() { cancel(); <-served })
	return &shareLab{ns: ns, owner: owner, fw: netcfg.New(int(ns))}
}

// client dials from the namespace, from local (the box's address or another).
func (l *shareLab) client(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = inNS(l.ns, func() error { c, err = d.DialContext(ctx, network, addr); return err })
			return c, err
		}}}
}

func (l *shareLab) kernelHas(p string) bool {
	list, err := l.fw.Blocklist()
	if err != nil {
		return false
	}
	for _, b := range list {
		if b.Prefix.String() == p {
			return true
		}
	}
	return false
}

// The box's blocks reach the relay's kernel, claimed as relay:OFFICE, and leave it when the
// box no longer lists them; the relay's own blocks go the other way; a trunk is never
// blocked whoever asks.
func TestShareBlocks(t *testing.T) {
	l := newShareLab(t)
	box := ShareClient{Relay: netip.MustParseAddr("10.254.0.1"), HTTP: l.client("10.254.0.2")}
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	ans, err := box.Push(ctx, []Block{
		{Prefix: netip.MustParsePrefix("198.18.0.66/32"), Until: until, Reason: "scanner\x1b[31m"},
		{Prefix: netip.MustParsePrefix("192.0.2.5/32"), Until: until, Reason: "a trunk"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Accepted != 1 || ans.Refused != 1 {
		t.Fatalf("push: %+v, want 1 accepted and the trunk refused", ans)
	}
	e, ok := l.owner.Lookup(netip.MustParsePrefix("198.18.0.66/32"))
	if !ok || e.Claims[0].Source != "relay:hq" || strings.ContainsRune(e.Claims[0].Reason, 0x1b) {
		t.Fatalf("the relay's blocklist has %+v (found %v), want a clean claim of relay:hq", e, ok)
	}
	if !l.kernelHas("198.18.0.66/32") {
		t.Fatal("the box's block is not in the relay's kernel")
	}
	// The relay's own verdict goes to the box; the box's own is not sent back.
	if _, err := l.owner.Block(netcfg.BlockRequest{Prefix: netip.MustParsePrefix("198.18.0.77/32"), Source: netcfg.SourceSIPGuard, Reason: "friendly-scanner", For: time.Hour}); err != nil {
		t.Fatal(err)
	}
	got, err := box.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Prefix.String() != "198.18.0.77/32" || got[0].Reason != "friendly-scanner" {
		t.Fatalf("fetch: %+v, want only the relay's own block", got)
	}
	// The box's next list no longer has it: withdrawn.
	if ans, err = box.Push(ctx, nil); err != nil || ans.Withdrawn != 1 {
		t.Fatalf("push of an empty list: %+v, %v; want 1 withdrawn", ans, err)
	}
	if l.kernelHas("198.18.0.66/32") {
		t.Fatal("a block the box withdrew stays in the relay's kernel")
	}
}

// Only the office's box is answered, only on the tunnel address, and a body over the bounds
// is refused before it is read whole.
func TestShareRefuses(t *testing.T) {
	l := newShareLab(t)
	url := ShareURL(netip.MustParseAddr("10.254.0.1"))
	post := func(from string, body []byte) int {
		t.Helper()
		resp, err := l.client(from).Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("post from %s: %v", from, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("10.254.0.1", []byte("[]")); code != http.StatusForbidden {
		t.Errorf("a POST from another address than the box's: %d, want 403", code)
	}
	big := append(append([]byte("["), bytes.Repeat([]byte(" "), MaxShareBody)...), ']')
	if code := post("10.254.0.2", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over %d bytes: %d, want 413", MaxShareBody, code)
	}
	var many bytes.Buffer
	many.WriteString("[")
	for i := range MaxShareEntries + 1 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `{"prefix":"198.19.%d.%d/32"}`, i/256, i%256)
	}
	many.WriteString("]")
	if code := post("10.254.0.2", many.Bytes()); code != http.StatusRequestEntityTooLarge {
		t.Errorf("%d entries: %d, want 413", MaxShareEntries+1, code)
	}
	if code := post("10.254.0.2", []byte(`{"prefix":"198.18.0.1/32"}`)); code != http.StatusBadRequest {
		t.Errorf("not an array: %d, want 400", code)
	}
	// Nothing listens on the namespace's other addresses.
	err := inNS(l.ns, func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:8478", 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Error("block sharing answers on 127.0.0.1, not only on the tunnel address")
	}
	var st []Block
	resp, err := l.client("10.254.0.2").Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET from the box: %s, %v", resp.Status, err)
	}
}
