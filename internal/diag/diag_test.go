package diag

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/miekg/dns"

	"github.com/officeedge/appliance/internal/lab/labtest"
)

// A target is an address or a host name; anything that could read as an option or a
// second argument is refused.
func TestTarget(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.1": "192.0.2.1", " sip.Example.net. ": "sip.example.net", "2001:db8::1": "2001:db8::1", "_sip._udp.example.net": "_sip._udp.example.net"} {
		if got, err := Target(in); err != nil || got != want {
			t.Errorf("Target(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-c 1000", "-f", "a b", "host;reboot", "x..y", "fe80::1%eth0", strings.Repeat("a", 64) + ".net", "-lead.example"} {
		if _, err := Target(in); !errors.Is(err, ErrTarget) {
			t.Errorf("Target(%q) accepted", in)
		}
	}
}

// loopback is the box's own loopback as an uplink: the sockets are bound to lo like they
// are to an uplink's interface.
var loopback = Uplink{Role: "primary", Name: "loopback", Interface: "lo", Source: netip.MustParseAddr("127.0.0.1")}

// Ping, and a capture of it: the replies come back, and the capture is pcapng with the
// echoes in it.
func TestPingAndCapture(t *testing.T) {
	labtest.RequireRoot(t)
	var pcap bytes.Buffer
	captured := make(chan error, 1)
	go func() {
		_, err := Capture(context.Background(), "lo", 3*time.Second, &pcap)
		captured <- err
	}()
	var replies []Reply
	if err := Ping(context.Background(), loopback, netip.MustParseAddr("127.0.0.1"), 2, func(r Reply) { replies = append(replies, r) }); err != nil {
		t.Fatal(err)
	}
	if len(replies) != 2 || replies[0].Lost || replies[1].Lost || replies[0].From != "127.0.0.1" {
		t.Fatalf("replies %+v", replies)
	}
	if err := <-captured; err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&pcap, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("link type %v", r.LinkType())
	}
	echoes := 0
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte("officeedge diag")) {
			echoes++
		}
	}
	if echoes < 4 { // two requests and two replies
		t.Errorf("the capture holds %d echo packets, want 4", echoes)
	}
}

// Traceroute to the box itself is one hop: the target answers.
func TestTracerouteOneHop(t *testing.T) {
	labtest.RequireRoot(t)
	var hops []Reply
	if err := Traceroute(context.Background(), loopback, netip.MustParseAddr("127.0.0.1"), func(r Reply) { hops = append(hops, r) }); err != nil {
		t.Fatal(err)
	}
	if len(hops) != 1 || !hops[0].Last || hops[0].From != "127.0.0.1" {
		t.Errorf("hops %+v", hops)
	}
}

// A lookup goes to the uplink's resolver and comes back with its records.
func TestLookup(t *testing.T) {
	labtest.RequireRoot(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		rr, _ := dns.NewRR("sip.example.net. 300 IN A 192.0.2.10")
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	u := loopback
	u.Resolvers = []netip.AddrPort{netip.MustParseAddrPort(pc.LocalAddr().String())}
	ans, err := Lookup(context.Background(), u, "sip.example.net", "A")
	if err != nil {
		t.Fatal(err)
	}
	if ans.Rcode != "NOERROR" || len(ans.Records) != 1 || ans.Records[0].Data != "192.0.2.10" {
		t.Errorf("answer %+v", ans)
	}
	if a, err := Resolve(context.Background(), u, "sip.example.net"); err != nil || a.String() != "192.0.2.10" {
		t.Errorf("resolve: %v %v", a, err)
	}
	if _, err := Lookup(context.Background(), u, "sip.example.net", "ANY; rm"); err == nil {
		t.Error("an unknown record type was asked")
	}
}
