package sipguard

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// hardThresholds are testThresholds with the defaults of the counters beside per source.
func hardThresholds() Thresholds {
	t := testThresholds()
	t.SlowFailures, t.SlowWindow = 20, time.Hour
	t.ExtFailures, t.ExtSources, t.ExtWindow = 10, 3, 10*time.Minute
	t.Net4Bits, t.NetFailures4, t.NetFailures6 = 24, 15, 5
	t.SiteWindow, t.SiteCeiling = 2*time.Hour, 20
	t.TLSRate, t.Hold = 60, 3*time.Second
	return t
}

// guess is one password guess from src on ext as svcrack makes it: a REGISTER, its 401,
// the REGISTER with credentials and the PBX's answer (code). It returns the findings of the
// credentialed request and of the answer.
func guess(t testing.TB, e *Engine, src netip.Addr, ext, id string, at time.Time, code int) (onReq, onAns Finding) {
	var m Msg
	obs := func(from, to netip.Addr, b []byte) Finding {
		if err := Parse(b, &m); err != nil {
			t.Fatalf("parse: %v", err)
		}
		return e.Observe(from, to, at, &m)
	}
	obs(src, pbx, req("REGISTER", ext, ext, "Yealink SIP-T46S", id, 1, ""))
	obs(pbx, src, resp(401, "REGISTER", ext, id, 1))
	onReq = obs(src, pbx, req("REGISTER", ext, ext, "Yealink SIP-T46S", id, 2, "a"+ext))
	onAns = obs(pbx, src, resp(code, "REGISTER", ext, id, 2))
	return onReq, onAns
}

// The Nth credentialed request of a source with N-1 failures is held (it is on its way
// to the PBX); the PBX's failure answer is the verdict.
func TestHoldAtThreshold(t *testing.T) {
	e := NewEngine(hardThresholds())
	at := now0
	for i := 1; i <= 4; i++ {
		r, a := guess(t, e, attacker, "1001", fmt.Sprint("h", i), at, 403)
		if r.Kind != KindNone || a.Kind != KindNone {
			t.Fatalf("guess %d: %v %v", i, r.Kind, a.Kind)
		}
		at = at.Add(time.Second)
	}
	r, a := guess(t, e, attacker, "1001", "h5", at, 403)
	if r.Kind != KindHold || a.Kind != KindBruteForce {
		t.Fatalf("5th guess: request %v, answer %v; want hold, brute-force", r.Kind, a.Kind)
	}
}

// A burst straddling the edge of the fixed window counts whole.
func TestFailuresAcrossWindowEdge(t *testing.T) {
	e := NewEngine(hardThresholds())
	var last Finding
	for i, s := range []int{30, 55, 56, 57, 91, 92} { // the last 5 within 37 s
		_, last = guess(t, e, attacker, "1001", fmt.Sprint("w", i), now0.Add(time.Duration(s)*time.Second), 403)
		if i < 5 && last.Kind.Blocks() {
			t.Fatalf("failure %d blocks already", i+1)
		}
	}
	if last.Kind != KindBruteForce {
		t.Fatalf("5 failures in 37 s across the window edge: %v", last.Kind)
	}
}

// evasion is one attack of the fixed suite; it reports whether the attacker was caught
// (a verdict before it was done, and nothing of it past that verdict).
type evasion struct {
	name string
	run  func(testing.TB) bool
}

func evasionSuite() []evasion {
	return []evasion{
		{"tcp-split-cracker", tcpSplitCracker},
		{"distributed-50-sources", distributedCrack},
		{"slow-one-a-minute", slowCrack},
		{"ipv6-64-rotation", rotatingV6},
	}
}

// blocking reports whether a finding blocks (a hold is not a verdict).
func blocking(f Finding) bool { return f.Kind.Blocks() }

// 50 sources, each guessing the password of 1001 four times (under the per-source threshold).
func distributedCrack(tb testing.TB) bool {
	e := NewEngine(hardThresholds())
	at := now0
	caught, escaped := false, 0
	for s := 0; s < 50; s++ {
		src := netip.AddrFrom4([4]byte{198, 51, byte(s), 7}) // different /24s
		for i := 0; i < 4; i++ {
			_, a := guess(tb, e, src, "1001", fmt.Sprint("d", s, "-", i), at, 403)
			at = at.Add(2 * time.Second)
			if blocking(a) {
				caught = true
				break
			}
			if caught {
				escaped++ // a failure after the verdict that did not block its source
			}
		}
	}
	return caught && escaped == 0
}

// One guess a minute for an hour, from one source.
func slowCrack(tb testing.TB) bool {
	e := NewEngine(hardThresholds())
	at := now0
	for i := 0; i < 60; i++ {
		if _, a := guess(tb, e, attacker, "1001", fmt.Sprint("s", i), at, 403); blocking(a) {
			return true
		}
		at = at.Add(time.Minute)
		e.Expire(at.Add(-10 * time.Minute)) // as Run's tick does
	}
	return false
}

// One host rotating through its /64: two guesses per address.
func rotatingV6(tb testing.TB) bool {
	e := NewEngine(hardThresholds())
	at := now0
	want := netip.MustParsePrefix("2001:db8:66:1::/64")
	for i := 0; i < 30; i++ {
		src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x66, 0, 1, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i + 1)})
		for j := 0; j < 2; j++ {
			_, a := guess(tb, e, src, "1001", fmt.Sprint("r", i, "-", j), at, 403)
			at = at.Add(time.Second)
			if blocking(a) {
				return a.Net == want
			}
		}
	}
	return false
}

// tcpSeg is an IPv4/TCP segment from sport with sequence number seq.
func tcpSeg(src, dst netip.Addr, sport, dport uint16, seq uint32, payload []byte) []byte {
	l4 := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], seq)
	l4[12], l4[13] = 5<<4, 0x18
	return ip4(src, dst, 6, append(l4, payload...))
}

// splitStream sends b as segments of at most n bytes on a connection, from seq.
func splitStream(g *Guard, at time.Time, src, dst netip.Addr, sport, dport uint16, seq *uint32, b []byte, n int) {
	for len(b) > 0 {
		k := min(n, len(b))
		g.Handle(at, tcpSeg(src, dst, sport, dport, *seq, b[:k]))
		*seq += uint32(k)
		b = b[k:]
	}
}

// A cracker over TCP that splits every request into 7-byte segments (no segment holds a
// header block, nor even a header): reassembled, its 5th failure blocks it.
func tcpSplitCracker(tb testing.TB) bool {
	fw := newFake()
	g, err := New(Options{Thresholds: hardThresholds(), Blocker: fw})
	if err != nil {
		tb.Fatal(err)
	}
	at := now0
	var up, down uint32 = 1000, 5000
	for i := 1; i <= 5; i++ {
		id := fmt.Sprint("t", i)
		splitStream(g, at, attacker, pbx, 40000, 5060, &up, req("REGISTER", "1001", "1001", "Yealink", id, 1, ""), 7)
		splitStream(g, at, pbx, attacker, 5060, 40000, &down, resp(401, "REGISTER", "1001", id, 1), 200)
		splitStream(g, at, attacker, pbx, 40000, 5060, &up, req("REGISTER", "1001", "1001", "Yealink", id, 2, "a1001"), 7)
		splitStream(g, at, pbx, attacker, 5060, 40000, &down, resp(403, "REGISTER", "1001", id, 2), 9)
		at = at.Add(time.Second)
	}
	st, _ := g.Snapshot()
	return st.Findings >= 1 && len(g.acts) >= 1 && (<-g.acts).f.Kind == KindBruteForce
}

func TestEvasions(t *testing.T) {
	for _, ev := range evasionSuite() {
		if !ev.run(t) {
			t.Errorf("%s: missed", ev.name)
		}
	}
}

// BenchmarkEvasions reports how many attacks of the fixed suite were missed.
func BenchmarkEvasions(b *testing.B) {
	missed := 0
	for i := 0; i < b.N; i++ {
		missed = 0
		for _, ev := range evasionSuite() {
			if !ev.run(b) {
				missed++
				b.Logf("missed: %s", ev.name)
			}
		}
	}
	b.ReportMetric(float64(missed), "missed")
}

// TCP reassembly: pipelined and split messages, retransmitted segments and a body in a
// later segment are each read once; the table of partial connections stays bounded.
func TestTCPReassembly(t *testing.T) {
	g, err := New(Options{Thresholds: hardThresholds(), Blocker: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	at := now0
	var seq uint32 = 1
	two := append(req("OPTIONS", "1", "1", "x", "a", 1, ""), req("OPTIONS", "1", "1", "x", "b", 1, "")...)
	g.Handle(at, tcpSeg(attacker, pbx, 40001, 5060, seq, two[:40]))
	g.Handle(at, tcpSeg(attacker, pbx, 40001, 5060, seq+20, two[20:60])) // retransmitted in part
	seq += 60
	splitStream(g, at, attacker, pbx, 40001, 5060, &seq, two[60:], 33)
	// An INVITE whose body comes in a later segment, with the next request.
	body := "v=0\r\no=- 1 1 IN IP4 192.0.2.66\r\n"
	inv := fmt.Sprintf("INVITE sip:1001@x SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: %d\r\n\r\n", len(body))
	splitStream(g, at, attacker, pbx, 40001, 5060, &seq, []byte(inv), 1000)
	splitStream(g, at, attacker, pbx, 40001, 5060, &seq, []byte(body+"OPTIONS sip:x SIP/2.0\r\nCall-ID: d\r\nCSeq: 2 OPTIONS\r\nContent-Length: 0\r\n\r\n"), 1000)
	st, _ := g.Snapshot()
	if st.SIP != 4 || st.Malformed != 0 {
		t.Errorf("read %d messages (%d malformed), want 4", st.SIP, st.Malformed)
	}
	if st := g.tcp.get(tcpKey{attacker, pbx, 40001, 5060}); st == nil || st.n != 0 || st.skip != 0 || st.nspan != 0 {
		t.Errorf("bytes still held after complete messages: %+v", st)
	}
	// Segments out of order (forwarding on several cores reorders them): read once, whole.
	msg := req("REGISTER", "1001", "1001", "Yealink", "ooo", 1, "a1001")
	var segs [][]byte
	for i := 0; i < len(msg); i += 50 {
		segs = append(segs, tcpSeg(attacker, pbx, 40003, 5060, 7000+uint32(i), msg[i:min(i+50, len(msg))]))
	}
	syn := tcpSeg(attacker, pbx, 40003, 5060, 6999, nil)
	syn[33] = 0x02 // the TCP flags: SYN
	g.Handle(at, syn)
	before, _ := g.Snapshot()
	for _, i := range []int{2, 1, 0, 4, 3, 5} {
		if i < len(segs) {
			g.Handle(at, segs[i])
		}
	}
	for i := 6; i < len(segs); i++ {
		g.Handle(at, segs[i])
	}
	if after, _ := g.Snapshot(); after.SIP != before.SIP+1 || after.Malformed != before.Malformed {
		t.Errorf("reordered segments: %d messages, %d malformed", after.SIP-before.SIP, after.Malformed-before.Malformed)
	}
	// Many connections each leaving half a header: the table stays at its size.
	for i := 0; i < 3*streamSlots; i++ {
		g.Handle(at, tcpSeg(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), pbx, 40000, 5060, 1, []byte("REGISTER sip:x SIP/2.0\r\nVia")))
	}
	if n := len(g.tcp.idx); n != streamSlots {
		t.Errorf("%d partial connections held, want %d", n, streamSlots)
	}
	h1 := []byte("OPTIONS sip:x SIP/2.0\r\nCall-ID: e\r\n")
	p1 := tcpSeg(attacker, pbx, 40002, 5060, seq, h1)
	p2 := tcpSeg(attacker, pbx, 40002, 5060, seq+uint32(len(h1)), []byte("CSeq: 3 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	before, _ = g.Snapshot()
	if n := testing.AllocsPerRun(100, func() {
		at = at.Add(time.Second)
		binary.BigEndian.PutUint32(p1[24:], seq)
		binary.BigEndian.PutUint32(p2[24:], seq+uint32(len(h1)))
		seq += uint32(len(p2) - 40 + len(h1))
		g.Handle(at, p1)
		g.Handle(at, p2)
	}); n != 0 {
		t.Errorf("%v allocations per split message", n)
	}
	if after, _ := g.Snapshot(); after.SIP-before.SIP != 101 || after.Malformed != before.Malformed {
		t.Errorf("split messages read: %d, malformed %d", after.SIP-before.SIP, after.Malformed-before.Malformed)
	}
}

// Five phones behind one address, one with a wrong password: an alert naming the
// extension, no verdict; an attacker guessing fast behind the same address is blocked at
// the ceiling.
func TestNATOffice(t *testing.T) {
	e := NewEngine(hardThresholds())
	site := netip.MustParseAddr("203.0.113.9")
	at := now0
	for round := 0; round < 60; round++ { // an hour, phones re-registering every minute
		for p := 1; p <= 5; p++ {
			ext := fmt.Sprint(1000 + p)
			code := 200
			if p == 3 {
				code = 403
			}
			r, a := guess(t, e, site, ext, fmt.Sprint("n", round, "-", p), at, code)
			if blocking(r) || blocking(a) {
				t.Fatalf("round %d phone %s: %v %v", round, ext, r.Kind, a.Kind)
			}
			if a.Kind == KindSiteUser && string(a.What) != "1003" {
				t.Fatalf("alert names %q", a.What)
			}
			if a.Kind == KindSiteUser && round != 4 {
				t.Errorf("alert at round %d", round)
			}
			at = at.Add(time.Second)
		}
		at = at.Add(55 * time.Second)
	}
	// An attacker behind the same address: 20 fast failures in a minute block the site.
	for i := 0; i < 25; i++ {
		_, a := guess(t, e, site, "1004", fmt.Sprint("x", i), at, 403)
		at = at.Add(100 * time.Millisecond)
		if blocking(a) {
			if a.Kind != KindBruteForce || i+1 > 20 {
				t.Fatalf("blocked at failure %d by %v", i+1, a.Kind)
			}
			return
		}
	}
	t.Fatal("an attacker behind the site's address was never blocked")
}

// A flood of new source addresses does not evict a source close to its verdict.
func TestEvictionKeepsAttacker(t *testing.T) {
	e := NewEngine(hardThresholds())
	e.Max = 1000
	at := now0
	for i := 0; i < 4; i++ {
		guess(t, e, attacker, "1001", fmt.Sprint("v", i), at, 403)
	}
	var m Msg
	if err := Parse(req("OPTIONS", "100", "100", "Yealink", "c", 1, ""), &m); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20000; i++ {
		e.Observe(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), pbx, at, &m)
	}
	if e.Sources() > 1000 {
		t.Fatalf("%d sources", e.Sources())
	}
	if _, a := guess(t, e, attacker, "1001", "v5", at, 403); a.Kind != KindBruteForce {
		t.Fatalf("5th failure after the flood: %v", a.Kind)
	}
}

// New SIP-TLS connections from one source over the per-minute cap block it; the guard
// escalates an IPv6 address to its /64 when a third address of the /64 offends.
func TestTLSRateAndV6Escalation(t *testing.T) {
	fw := newFake()
	th := hardThresholds()
	g, err := New(Options{Thresholds: th, Blocker: fw, TLSPort: 5061})
	if err != nil {
		t.Fatal(err)
	}
	syn := func(sport uint16) []byte {
		l4 := make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], 5061)
		l4[12], l4[13] = 5<<4, 0x02
		return ip4(attacker, pbx, 6, l4)
	}
	for i := 0; i < 61; i++ {
		g.Handle(now0, syn(uint16(30000+i)))
	}
	if a := <-g.acts; a.f.Kind != KindTLSRate || a.f.Actor != attacker {
		t.Fatalf("finding %v for %s", a.f.Kind, a.f.Actor)
	}
	for i := 1; i <= 3; i++ {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8:77:1::%d", i))
		g.block(t.Context(), a, netip.PrefixFrom(a, 128), KindBruteForce, ProofChallenge, "1001", time.Now())
	}
	if _, ok := fw.entries[netip.MustParsePrefix("2001:db8:77:1::/64")]; !ok {
		t.Fatalf("the /64 was not blocked after 3 of its addresses: %v", fw.entries)
	}
}
