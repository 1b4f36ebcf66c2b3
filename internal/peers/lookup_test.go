package peers

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab/labtest"
)

// A trunk's name is followed through its SIP SRV records to their targets' addresses, with the
// shortest TTL, served by a real dnsmasq on loopback; private and loopback answers are left out.
func TestLookupFollowsSRV(t *testing.T) {
	labtest.RequireRoot(t, "dnsmasq")
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	cmd := exec.Command("dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1",
		"--bind-interfaces", "--port="+strconv.Itoa(port), "--user=root", "--pid-file=", "--log-facility=-", "--local-ttl=300",
		"--host-record=sip.trunk.example,198.51.100.40",
		"--host-record=edge1.trunk.example,198.51.100.41,2001:db8:7::41",
		"--host-record=edge2.trunk.example,10.1.2.3",
		"--srv-host=_sip._udp.sip.trunk.example,edge1.trunk.example,5060,10,50",
		"--srv-host=_sips._tcp.sip.trunk.example,edge2.trunk.example,5061,10,50")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	r := New(Options{Servers: func() []netip.AddrPort { return []netip.AddrPort{server} }})
	// Ready when it answers a plain A query: a lookup made while it was still starting could
	// have lost one of its queries and be rightly partial.
	labtest.WaitFor(t, "dnsmasq to answer", 10*time.Second, func() bool {
		_, _, err := r.lookup(context.Background(), "sip.trunk.example", false)
		return err == nil
	})
	addrs, ttl, err := r.lookup(context.Background(), "sip.trunk.example", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.40", "198.51.100.41", "2001:db8:7::41"}
	got := make([]string, len(addrs))
	for i, a := range addrs {
		got[i] = a.String()
	}
	if !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v (the private SRV target left out)", got, want)
	}
	if ttl != 300*time.Second {
		t.Errorf("TTL %s, want 5m0s", ttl)
	}
	// An office's name is not looked up as SRV.
	addrs, _, err = r.lookup(context.Background(), "sip.trunk.example", false)
	if err != nil || len(addrs) != 1 {
		t.Errorf("office lookup: %v %v, want only the A record", addrs, err)
	}
	if _, _, err := r.lookup(context.Background(), "edge2.trunk.example", false); err == nil || !strings.Contains(err.Error(), "no usable address") {
		t.Errorf("a name with only a private address: %v, want refused", err)
	}
}
