package sipguard

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// A forged single UDP packet proves nothing: a nonce sent to another address, one sent too
// long ago, or none at all leave the verdict unproven; sending back the nonce the PBX sent
// to the same address proves it.
func TestProofNeedsTheNonceSentToThatAddress(t *testing.T) {
	e := NewEngine(testThresholds())
	other := netip.MustParseAddr("192.0.2.77")
	scanAuth := func(src netip.Addr, id string, at time.Time) Finding {
		return observe(t, e, src, pbx, at, req("REGISTER", "100", "100", "friendly-scanner", id, 2, "100"))
	}
	if f := observe(t, e, attacker, pbx, now0, req("OPTIONS", "100", "100", "friendly-scanner", "o", 1, "")); f.Kind != KindScanner || f.Proof != ProofNone {
		t.Fatalf("a plain scanner OPTIONS: %v proof %v, want an unproven scanner", f.Kind, f.Proof)
	}
	e.Forget(attacker)
	// The PBX challenges other; attacker sends other's nonce back from its own address.
	observe(t, e, other, pbx, now0, req("REGISTER", "100", "100", "Yealink", "c", 1, ""))
	observe(t, e, pbx, other, now0, resp(401, "REGISTER", "100", "c", 1))
	if f := scanAuth(attacker, "c", now0); f.Kind != KindScanner || f.Proof != ProofNone {
		t.Fatalf("a nonce sent to another address: %v proof %v", f.Kind, f.Proof)
	}
	// other itself, within the nonce's life: proven; after it, not.
	if f := scanAuth(other, "c", now0.Add(time.Minute)); f.Kind != KindScanner || f.Proof != ProofChallenge {
		t.Fatalf("the nonce sent back by its address: %v proof %v", f.Kind, f.Proof)
	}
	e.Forget(other)
	observe(t, e, other, pbx, now0, req("REGISTER", "100", "100", "Yealink", "d", 1, ""))
	observe(t, e, pbx, other, now0, resp(401, "REGISTER", "100", "d", 1))
	if f := scanAuth(other, "d", now0.Add(nonceTTL+time.Second)); f.Proof != ProofNone {
		t.Fatalf("a nonce past its life proved %v", f.Proof)
	}
}

// svcrack's guesses answer the PBX's challenges: the brute-force verdict on the PBX's 403
// is proven by the request it answers.
func TestCrackAnsweringChallengesIsProven(t *testing.T) {
	e := NewEngine(testThresholds())
	var f Finding
	for i := 0; i < 5 && f.Kind == KindNone; i++ {
		_, f = guess(t, e, attacker, "100", string(rune('a'+i)), now0.Add(time.Duration(i)*time.Second), 403)
	}
	if f.Kind != KindBruteForce || f.Proof != ProofChallenge {
		t.Fatalf("finding %v proof %v, want a proven brute force", f.Kind, f.Proof)
	}
}

// tcpAck is a TCP segment from src:sport to dst:dport with seq, ack and flags.
func tcpAck(src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags byte, payload []byte) []byte {
	l4 := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], seq)
	binary.BigEndian.PutUint32(l4[8:], ack)
	l4[12], l4[13] = 5<<4, flags
	return ip4(src, dst, 6, append(l4, payload...))
}

// Over TCP, a client that acknowledged the PBX's SYN-ACK proved its address; a segment that
// did not (a blind forger cannot know the PBX's sequence number) proves nothing. Each
// verdict is blocked, the proven one for the first offense's hour and shared, the other for
// the unproven cap, never escalated and not shared.
func TestTCPHandshakeProves(t *testing.T) {
	fw := newFake()
	g, err := New(Options{Thresholds: testThresholds(), Blocker: fw})
	if err != nil {
		t.Fatal(err)
	}
	forger := netip.MustParseAddr("192.0.2.88")
	scan := req("OPTIONS", "100", "100", "friendly-scanner", "t", 1, "")
	const isn = 0x5eed0000
	// A forger's segment, never handshaken, with a guessed ack.
	g.Handle(time.Now(), tcpAck(forger, pbx, 40001, 5060, 1000, 12345, tcpACK|0x08, scan))
	// A real client: SYN, the PBX's SYN-ACK, the client's ACK and its data.
	g.Handle(time.Now(), tcpAck(attacker, pbx, 40000, 5060, 999, 0, tcpSYN, nil))
	g.Handle(time.Now(), tcpAck(pbx, attacker, 5060, 40000, isn, 1000, tcpSYN|tcpACK, nil))
	g.Handle(time.Now(), tcpAck(attacker, pbx, 40000, 5060, 1000, isn+1, tcpACK, nil))
	g.Handle(time.Now(), tcpAck(attacker, pbx, 40000, 5060, 1000, isn+1, tcpACK|0x08, scan))
	for len(g.acts) > 0 {
		g.act(context.Background(), <-g.acts)
	}
	if d, ok := fw.get("192.0.2.66/32"); !ok || d != time.Hour {
		t.Errorf("handshaken scanner blocked %v for %s, want the first offense's hour", ok, d)
	}
	if why, ok := g.Shared(netip.MustParsePrefix("192.0.2.66/32")); !ok || why != ProofTCP.String() {
		t.Errorf("handshaken scanner shared %v (%q)", ok, why)
	}
	if d, ok := fw.get("192.0.2.88/32"); !ok || d != DefaultUnprovenBlockTime {
		t.Errorf("forged segment blocked %v for %s, want the unproven cap %s", ok, d, DefaultUnprovenBlockTime)
	}
	if _, ok := g.Shared(netip.MustParsePrefix("192.0.2.88/32")); ok {
		t.Errorf("the forged segment's block is shared")
	}
}

// An unproven source is blocked for the cap again and again, never escalated.
func TestUnprovenNeverEscalates(t *testing.T) {
	fw := newFake()
	g, err := New(Options{Thresholds: testThresholds(), Blocker: fw, UnprovenBlockTime: 7 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("192.0.2.66/32")
	for i := range 3 {
		g.Handle(time.Now(), udp(attacker, pbx, req("OPTIONS", "100", "100", "friendly-scanner", "u", i+1, "")))
		if len(g.acts) != 1 {
			t.Fatalf("scan %d raised %d actions", i, len(g.acts))
		}
		g.act(context.Background(), <-g.acts)
		if d, ok := fw.get(p.String()); !ok || d != 7*time.Minute {
			t.Fatalf("scan %d blocked %v for %s, want 7m", i, ok, d)
		}
		if l := g.Blocked(); len(l) != 1 || l[0].Proven || l[0].Offense != 0 {
			t.Fatalf("scan %d: %+v", i, l)
		}
		if _, err := fw.Unblock(p, "test"); err != nil {
			t.Fatal(err)
		}
		g.drop([]netip.Prefix{p}, "test")
	}
	if o := g.st.Offenses[p.String()]; o != nil {
		t.Errorf("unproven blocks counted offenses: %+v", o)
	}
}
