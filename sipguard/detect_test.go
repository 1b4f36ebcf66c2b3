package sipguard

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var (
	attacker = netip.MustParseAddr("192.0.2.66")
	trunk    = netip.MustParseAddr("192.0.2.10")
	pbx      = netip.MustParseAddr("192.168.50.10")
	now0     = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
)

func testThresholds() Thresholds {
	return Thresholds{
		ScannerAgents: DefaultScannerAgents, AuthFailures: 5, AuthWindow: time.Minute, Challenges: 30,
		EnumUsers: 10, EnumWindow: time.Minute, FloodRate: 50, CallsPerMin: 5, Concurrent: 4,
		DenyPrefixes: DefaultDenyPrefixes, Local: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")},
	}
}

func req(method, ruser, from, ua, callID string, cseq int, auth string) []byte {
	s := fmt.Sprintf("%s sip:%s@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK%d\r\n"+
		"From: <sip:%s@192.0.2.10>;tag=1\r\nTo: <sip:%s@198.51.100.2>\r\nCall-ID: %s\r\nCSeq: %d %s\r\n",
		method, ruser, cseq, from, ruser, callID, cseq, method)
	if ua != "" {
		s += "User-Agent: " + ua + "\r\n"
	}
	if auth != "" {
		s += "Authorization: Digest username=\"" + auth + "\", realm=\"pbx\", nonce=\"1\", uri=\"sip:x\", response=\"00\"\r\n"
	}
	return []byte(s + "Content-Length: 0\r\n\r\n")
}

// resp is the PBX's answer; a 401 or 407 challenges with nonce "1", which req's credentials
// send back.
func resp(code int, method, to, callID string, cseq int) []byte {
	chal := ""
	switch code {
	case 401:
		chal = "WWW-Authenticate: Digest realm=\"pbx\", nonce=\"1\"\r\n"
	case 407:
		chal = "Proxy-Authenticate: Digest realm=\"pbx\", nonce=\"1\"\r\n"
	}
	return []byte(fmt.Sprintf("SIP/2.0 %d X\r\nVia: SIP/2.0/UDP 192.0.2.66\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:%s@198.51.100.2>;tag=2\r\nCall-ID: %s\r\nCSeq: %d %s\r\nServer: kamailio\r\n%sContent-Length: 0\r\n\r\n",
		code, to, callID, cseq, method, chal))
}

func observe(t *testing.T, e *Engine, src, dst netip.Addr, at time.Time, b []byte) Finding {
	t.Helper()
	var m Msg
	if err := Parse(b, &m); err != nil {
		t.Fatalf("parse: %v\n%s", err, b)
	}
	return e.Observe(src, dst, at, &m)
}

func TestScannerAtFirstPacket(t *testing.T) {
	e := NewEngine(testThresholds())
	f := observe(t, e, attacker, pbx, now0, req("OPTIONS", "100", "sipvicious", "friendly-scanner", "1", 1, ""))
	if f.Kind != KindScanner || f.Actor != attacker {
		t.Fatalf("finding %v actor %s", f.Kind, f.Actor)
	}
}

func TestBruteForceAtFifthFailure(t *testing.T) {
	e := NewEngine(testThresholds())
	at := now0
	for i := 1; i <= 5; i++ {
		id := fmt.Sprint("c", i)
		if f := observe(t, e, attacker, pbx, at, req("REGISTER", "1001", "1001", "PolycomVVX", id, 1, "")); f.Kind != KindNone {
			t.Fatalf("request %d: %v", i, f.Kind)
		}
		if f := observe(t, e, pbx, attacker, at, resp(401, "REGISTER", "1001", id, 1)); f.Kind != KindNone {
			t.Fatalf("challenge %d: %v", i, f.Kind)
		}
		observe(t, e, attacker, pbx, at, req("REGISTER", "1001", "1001", "PolycomVVX", id, 2, "1001x"))
		f := observe(t, e, pbx, attacker, at, resp(403, "REGISTER", "1001", id, 2))
		if i < 5 && f.Kind != KindNone {
			t.Fatalf("failure %d already blocks: %v", i, f.Kind)
		}
		if i == 5 && (f.Kind != KindBruteForce || f.Actor != attacker) {
			t.Fatalf("5th failure: %v", f.Kind)
		}
		at = at.Add(time.Second)
	}
}

func TestLegitPhoneNeverTriggers(t *testing.T) {
	e := NewEngine(testThresholds())
	phone := netip.MustParseAddr("192.0.2.101")
	at := now0
	for i := 0; i < 500; i++ {
		id := fmt.Sprint("reg", i)
		observe(t, e, phone, pbx, at, req("REGISTER", "1001", "1001", "Yealink", id, 1, ""))
		observe(t, e, pbx, phone, at, resp(401, "REGISTER", "1001", id, 1))
		pw := "u1001"
		code := 200
		if i%25 == 0 { // an occasional wrong password
			code = 401
		}
		if f := observe(t, e, phone, pbx, at, req("REGISTER", "1001", "1001", "Yealink", id, 2, pw)); f.Kind != KindNone {
			t.Fatalf("register %d: %v", i, f.Kind)
		}
		if f := observe(t, e, pbx, phone, at, resp(code, "REGISTER", "1001", id, 2)); f.Kind != KindNone {
			t.Fatalf("answer %d: %v", i, f.Kind)
		}
		at = at.Add(2 * time.Second)
	}
}

func TestEnumeration(t *testing.T) {
	e := NewEngine(testThresholds())
	var f Finding
	for i := 0; i < 10; i++ {
		id := fmt.Sprint("e", i)
		user := fmt.Sprint(200 + i)
		observe(t, e, attacker, pbx, now0, req("REGISTER", user, user, "", id, 1, ""))
		f = observe(t, e, pbx, attacker, now0, resp(404, "REGISTER", user, id, 1))
		if i < 9 && f.Kind != KindNone {
			t.Fatalf("user %d: %v", i, f.Kind)
		}
	}
	if f.Kind != KindEnumeration {
		t.Fatalf("10 distinct users answered 404: %v", f.Kind)
	}
}

func TestFlood(t *testing.T) {
	e := NewEngine(testThresholds())
	var f Finding
	for i := 0; i < 51 && f.Kind == KindNone; i++ {
		f = observe(t, e, attacker, pbx, now0.Add(time.Duration(i)*time.Millisecond), req("OPTIONS", "1", "1", "", fmt.Sprint(i), 1, ""))
	}
	if f.Kind != KindFlood {
		t.Fatalf("51 requests in a second: %v", f.Kind)
	}
}

func TestTollFraud(t *testing.T) {
	e := NewEngine(testThresholds())
	for _, num := range []string{"+88112345", "0088212345", "01118765551234", "+1-876-555-1234"} {
		e.Forget(attacker)
		if f := observe(t, e, attacker, pbx, now0, req("INVITE", num, "1001", "", "t"+num, 1, "")); f.Kind != KindTollFraud || string(f.What) != num {
			t.Errorf("INVITE to %s: %v %q", num, f.Kind, f.What)
		}
	}
	for _, num := range []string{"+441234567", "02071234567", "1001"} {
		if f := observe(t, e, attacker, pbx, now0, req("INVITE", num, "1001", "", "ok"+num, 1, "")); f.Kind != KindNone {
			t.Errorf("INVITE to %s: %v", num, f.Kind)
		}
	}
	// From the office's PBX: reported (the guard alerts, never blocks the LAN).
	if f := observe(t, e, pbx, trunk, now0, req("INVITE", "+88299", "1001", "", "lan", 1, "")); f.Kind != KindTollFraud || f.Actor != pbx {
		t.Errorf("LAN INVITE: %v %s", f.Kind, f.Actor)
	}
	home := testThresholds()
	home.HomeCountry = "44"
	e = NewEngine(home)
	if f := observe(t, e, attacker, pbx, now0, req("INVITE", "+33123456", "1001", "", "h", 1, "")); f.Kind != KindTollFraud {
		t.Errorf("home-country-only: INVITE to France: %v", f.Kind)
	}
	if f := observe(t, e, attacker, pbx, now0, req("INVITE", "+44123456", "1001", "", "h2", 1, "")); f.Kind != KindNone {
		t.Errorf("home-country-only: INVITE home: %v", f.Kind)
	}
}

func TestCallCaps(t *testing.T) {
	e := NewEngine(testThresholds())
	var f Finding
	i := 0
	for ; i < 10 && f.Kind == KindNone; i++ {
		f = observe(t, e, attacker, pbx, now0.Add(time.Duration(i)*time.Second), req("INVITE", "+44200", "1001", "", fmt.Sprint("call", i), 1, ""))
	}
	if f.Kind != KindConcurrent || i != 5 {
		t.Fatalf("5th concurrent call: %v at %d", f.Kind, i)
	}
	e = NewEngine(testThresholds())
	f = Finding{}
	for i = 0; i < 10 && f.Kind == KindNone; i++ {
		id := fmt.Sprint("c", i)
		f = observe(t, e, attacker, pbx, now0.Add(time.Duration(i)*time.Second), req("INVITE", "+44200", "1001", "", id, 1, ""))
		if f.Kind == KindNone {
			observe(t, e, attacker, pbx, now0.Add(time.Duration(i)*time.Second), req("BYE", "+44200", "1001", "", id, 2, ""))
		}
	}
	if f.Kind != KindCallRate || i != 6 {
		t.Fatalf("6th call in a minute: %v at %d", f.Kind, i)
	}
}

// A forged From/Via/Contact naming the trunk: the finding names the packet's source.
func TestIdentityIsPacketSource(t *testing.T) {
	e := NewEngine(testThresholds())
	b := []byte("REGISTER sip:198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:100@192.0.2.10>;tag=1\r\nTo: <sip:100@192.0.2.10>\r\nContact: <sip:100@192.0.2.10>\r\n" +
		"Call-ID: x@192.0.2.10\r\nCSeq: 1 REGISTER\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")
	f := observe(t, e, attacker, pbx, now0, b)
	if f.Kind != KindScanner || f.Actor != attacker {
		t.Fatalf("finding %v on %s, want scanner on %s", f.Kind, f.Actor, attacker)
	}
}

func TestWeakAuthName(t *testing.T) {
	e := NewEngine(testThresholds())
	f := observe(t, e, netip.MustParseAddr("192.0.2.101"), pbx, now0, req("REGISTER", "1001", "1001", "Yealink", "w", 2, "1001"))
	if f.Kind != KindWeakAuth || string(f.What) != "1001" {
		t.Fatalf("auth name = extension: %v %q", f.Kind, f.What)
	}
	if f.Kind.Blocks() {
		t.Fatal("a posture finding must not block")
	}
}

func TestFilterAssembles(t *testing.T) {
	if _, err := Filter([]uint16{5060, 5061}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkParseDetect is the hot path: parse one message and run every detector, with
// 100k other sources already tracked.
func BenchmarkParseDetect(b *testing.B) {
	e := NewEngine(testThresholds())
	var m Msg
	for i := 0; i < 100000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		_ = Parse(req("OPTIONS", "1", "1", "x", "c", 1, ""), &m)
		e.Observe(a, pbx, now0, &m)
	}
	msgs := [][]byte{
		req("REGISTER", "1001", "1001", "Yealink SIP-T46S", "reg1@192.0.2.101", 2, "1001x"),
		resp(200, "REGISTER", "1001", "reg1@192.0.2.101", 2),
		req("INVITE", "+442071234567", "1001", "Yealink SIP-T46S", "call1@192.0.2.101", 1, "1001x"),
		resp(401, "INVITE", "1001", "call1@192.0.2.101", 1),
	}
	phone := netip.MustParseAddr("192.0.2.101")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msg := msgs[i%len(msgs)]
		if err := Parse(msg, &m); err != nil {
			b.Fatal(err)
		}
		src, dst := phone, pbx
		if !m.Request {
			src, dst = pbx, phone
		}
		// Spread over a minute so the flood and call-rate windows see a sane rate.
		e.Observe(src, dst, now0.Add(time.Duration(i)*time.Second), &m)
	}
}

// A source already acted upon: the INVITEs still in flight before the kernel drops it
// raise nothing more (each would otherwise queue another block, escalating the timeout).
func TestTollFraudOnceActedUpon(t *testing.T) {
	e := NewEngine(testThresholds())
	if f := observe(t, e, attacker, pbx, now0, req("INVITE", "+88112345", "1001", "", "t1", 1, "")); f.Kind != KindTollFraud {
		t.Fatalf("first INVITE: %v", f.Kind)
	}
	e.MarkDone(attacker)
	for i := 0; i < 5; i++ {
		if f := observe(t, e, attacker, pbx, now0, req("INVITE", "+88112345", "1001", "", fmt.Sprint("t", i), 1, "")); f.Kind != KindNone {
			t.Fatalf("INVITE %d after the source was acted upon: %v", i, f.Kind)
		}
	}
	// The office's PBX is never marked done: each attempt is still reported.
	if f := observe(t, e, pbx, trunk, now0, req("INVITE", "+88299", "1001", "", "lan", 1, "")); f.Kind != KindTollFraud {
		t.Errorf("LAN INVITE: %v", f.Kind)
	}
}

// A flood of distinct source addresses: the engine tracks at most Max of them, keeps
// detecting, and stops allocating once full.
func TestSourcesBounded(t *testing.T) {
	e := NewEngine(testThresholds())
	e.Max = 1000
	var m Msg
	if err := Parse(req("REGISTER", "100", "100", "Yealink", "c", 1, ""), &m); err != nil {
		t.Fatal(err)
	}
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := 0; i < 5000; i++ {
		e.Observe(src(i), pbx, now0, &m)
	}
	if n := e.Sources(); n != 1000 {
		t.Fatalf("tracking %d sources, want at most 1000", n)
	}
	i := 5000
	if allocs := testing.AllocsPerRun(1000, func() { e.Observe(src(i), pbx, now0, &m); i++ }); allocs > 0.01 {
		t.Errorf("%v allocations per new source when full", allocs)
	}
	if e.Sources() != 1000 {
		t.Fatalf("tracking %d sources", e.Sources())
	}
	if f := observe(t, e, attacker, pbx, now0, req("OPTIONS", "100", "sipvicious", "friendly-scanner", "1", 1, "")); f.Kind != KindScanner {
		t.Errorf("scanner while full: %v", f.Kind)
	}
	e.Expire(now0.Add(time.Second))
	if e.Sources() != 0 {
		t.Errorf("%d sources after expiry", e.Sources())
	}
}
