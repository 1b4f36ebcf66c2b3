package dnsfwd

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func answer(name string, ttl uint32, addr string) *dns.Msg {
	m := new(dns.Msg).SetQuestion(name, dns.TypeA)
	rr, _ := dns.NewRR(name + " " + strconv.Itoa(int(ttl)) + " IN A " + addr)
	m.Response, m.Answer = true, []dns.RR{rr}
	return m
}

// Answers are kept for their TTL, aged when handed out, and the least recently used go
// first when the cache is full.
func TestCacheTTLAndEviction(t *testing.T) {
	c := newCache(2)
	now := time.Now()
	a, b, d := answer("a.example.", 30, "192.0.2.1"), answer("b.example.", 300, "192.0.2.2"), answer("d.example.", 300, "192.0.2.3")
	c.put(keyOf(a), a, now)
	c.put(keyOf(b), b, now)
	if m, ok := c.get(keyOf(a), a, now.Add(10*time.Second)); !ok || m.Answer[0].Header().Ttl != 20 {
		t.Fatalf("a after 10s: %v %v, want TTL 20", ok, m)
	}
	c.put(keyOf(d), d, now) // full: b was used least recently
	if _, ok := c.get(keyOf(b), b, now); ok {
		t.Fatal("b survived eviction")
	}
	if _, ok := c.get(keyOf(a), a, now.Add(30*time.Second)); ok {
		t.Fatal("a outlived its TTL")
	}
	if c.len() != 1 {
		t.Fatalf("%d entries, want 1 (d)", c.len())
	}
	// Errors and TTL 0 are not kept; NXDOMAIN is, for the SOA's negative TTL.
	fail := answer("e.example.", 30, "192.0.2.4")
	fail.Rcode = dns.RcodeServerFailure
	c.put(keyOf(fail), fail, now)
	zero := answer("z.example.", 0, "192.0.2.5")
	c.put(keyOf(zero), zero, now)
	nx := new(dns.Msg).SetQuestion("nx.example.", dns.TypeA)
	nx.Rcode = dns.RcodeNameError
	soa, _ := dns.NewRR("example. 3600 IN SOA ns.example. h.example. 1 3600 600 86400 60")
	nx.Ns = []dns.RR{soa}
	c.put(keyOf(nx), nx, now)
	if _, ok := c.get(keyOf(fail), fail, now); ok {
		t.Fatal("SERVFAIL kept")
	}
	if _, ok := c.get(keyOf(zero), zero, now); ok {
		t.Fatal("TTL 0 kept")
	}
	if m, ok := c.get(keyOf(nx), nx, now.Add(59*time.Second)); !ok || m.Rcode != dns.RcodeNameError {
		t.Fatal("NXDOMAIN not kept for its negative TTL")
	}
	if _, ok := c.get(keyOf(nx), nx, now.Add(61*time.Second)); ok {
		t.Fatal("NXDOMAIN kept past the SOA minimum")
	}
}

func TestReverseAddr(t *testing.T) {
	for name, want := range map[string]string{
		"10.50.168.192.in-addr.arpa.": "192.168.50.10",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.8.b.d.0.1.0.0.2.ip6.arpa.": "2001:db8:50::1",
	} {
		if a, ok := reverseAddr(name); !ok || a.String() != want {
			t.Errorf("%s: %v %v, want %s", name, a, ok, want)
		}
	}
	for _, bad := range []string{"50.168.192.in-addr.arpa.", "x.50.168.192.in-addr.arpa.", "1.ip6.arpa.", "www.example."} {
		if a, ok := reverseAddr(bad); ok {
			t.Errorf("%s parsed as %v", bad, a)
		}
	}
}

func TestRebinding(t *testing.T) {
	f := New(Options{Domain: "office.internal", LAN: []netip.Prefix{netip.MustParsePrefix("2001:db8:50::/64")},
		RebindAllow: []string{"corp.example"}})
	for _, c := range []struct {
		name, addr string
		refused    bool
	}{
		{"www.example.", "192.0.2.80", false},
		{"evil.example.", "192.168.1.1", true},
		{"evil.example.", "127.0.0.1", true},
		{"evil.example.", "10.0.0.1", true},
		{"nas.corp.example.", "10.0.0.1", false},
	} {
		if got := f.rebinding(c.name, answer(c.name, 30, c.addr)); got != c.refused {
			t.Errorf("%s -> %s: rebinding %v, want %v", c.name, c.addr, got, c.refused)
		}
	}
	m := new(dns.Msg).SetQuestion("evil.example.", dns.TypeAAAA)
	rr, _ := dns.NewRR("evil.example. 30 IN AAAA 2001:db8:50::20")
	m.Answer = []dns.RR{rr}
	if !f.rebinding("evil.example.", m) {
		t.Error("a public name answering with the LAN's IPv6 prefix passed")
	}
}

// Local names are answered by the box, with their reverse names; a TLD's DS record and
// public reverse names go out (with no upstream here: SERVFAIL says it tried).
func TestLocalAnswers(t *testing.T) {
	f := New(Options{Domain: "Office.Internal.", BoxName: "gateway", LAN: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")},
		Static: map[string][]netip.Addr{"gateway": {netip.MustParseAddr("192.168.50.1")}, "pbx": {netip.MustParseAddr("192.168.50.10")}},
		Hosts: func() map[string]netip.Addr {
			return map[string]netip.Addr{"DeskPhone": netip.MustParseAddr("192.168.50.21")}
		}})
	ask := func(name string, qtype uint16) *dns.Msg {
		return f.answer(new(dns.Msg).SetQuestion(name, qtype))
	}
	for name, want := range map[string]string{"pbx.office.internal.": "192.168.50.10", "deskphone.office.internal.": "192.168.50.21",
		"PBX.OFFICE.INTERNAL.": "192.168.50.10", "deskphone.": "192.168.50.21"} {
		m := ask(name, dns.TypeA)
		if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != want || !m.Authoritative {
			t.Errorf("%s: %v", name, m)
		}
	}
	if m := ask("pbx.office.internal.", dns.TypeAAAA); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 || len(m.Ns) != 1 {
		t.Errorf("AAAA of a v4-only host: want NODATA with the SOA, got %v", m)
	}
	if m := ask("nobody.office.internal.", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Errorf("unknown local host: %v", m)
	}
	if m := ask("21.50.168.192.in-addr.arpa.", dns.TypePTR); len(m.Answer) != 1 || m.Answer[0].(*dns.PTR).Ptr != "deskphone.office.internal." {
		t.Errorf("PTR of a DHCP host: %v", m)
	}
	if m := ask("99.50.168.192.in-addr.arpa.", dns.TypePTR); m.Rcode != dns.RcodeNameError {
		t.Errorf("PTR of an unknown LAN address must not go out: %v", m)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"com.", dns.TypeDS}, {"80.2.0.192.in-addr.arpa.", dns.TypePTR}, {"www.example.", dns.TypeA}} {
		if m := ask(q.name, q.qtype); m.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s %s was not forwarded: %v", q.name, dns.TypeToString[q.qtype], m)
		}
	}
}

// The fast path reads a packet's cache key exactly as the slow path makes it from the
// message, and a cached answer comes back with the client's ID, RD bit and name case, and
// aged TTLs; anything unusual is left to the slow path.
func TestFastPathKeyAndRender(t *testing.T) {
	c := newCache(16)
	now := time.Now()
	up := answer("www.example.", 300, "192.0.2.80")
	for _, edns := range []bool{false, true} {
		q := new(dns.Msg).SetQuestion("WwW.ExAmple.", dns.TypeA)
		q.Id = 4242
		if edns {
			q.SetEdns0(4096, true)
		}
		wire, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		wq, key, ok := parseQuery(wire, nil)
		if !ok || string(key) != keyOf(q) {
			t.Fatalf("edns %v: parsed %v key %q, want %q", edns, ok, key, keyOf(q))
		}
		if c.lookup(key, now) != nil {
			t.Fatal("a hit before anything was kept")
		}
		c.put(keyOf(q), up, now)
		e := c.lookup(key, now.Add(100*time.Second))
		if e == nil {
			t.Fatalf("edns %v: no hit after put", edns)
		}
		m := new(dns.Msg)
		if err := m.Unpack(e.render(nil, wq.id, wq.rd, wq.question, now.Add(100*time.Second))); err != nil {
			t.Fatal(err)
		}
		if m.Id != 4242 || !m.RecursionDesired || m.Question[0].Name != "WwW.ExAmple." || len(m.Answer) != 1 ||
			m.Answer[0].Header().Ttl != 200 || (m.IsEdns0() != nil) != edns || (edns && !m.IsEdns0().Do()) {
			t.Fatalf("edns %v: rendered %v", edns, m)
		}
	}
	for _, bad := range []func(m *dns.Msg){
		func(m *dns.Msg) { m.Response = true },
		func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify },
		func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) },
		func(m *dns.Msg) {
			m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeA, Class: dns.ClassINET}})
		},
	} {
		m := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
		bad(m)
		wire, _ := m.Pack()
		if _, _, ok := parseQuery(wire, nil); ok {
			t.Errorf("the fast path took %v", m)
		}
	}
	if _, _, ok := parseQuery([]byte{1, 2, 3}, nil); ok {
		t.Error("the fast path took 3 bytes")
	}
}
