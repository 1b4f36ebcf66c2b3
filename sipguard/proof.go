package sipguard

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"time"
)

// A UDP packet's source address is whatever its sender wrote: one forged OPTIONS can name the
// box's DNS resolver, a trunk or another office. Such a verdict is still acted upon at the
// box (briefly: Options.UnprovenBlockTime), but only a source that proved it receives what
// is sent to its address is shared with the fleet. Proof is one of:
//
//   - a challenge answered: a request whose credentials carry a digest nonce the PBX sent
//     to that same address in a 401/407 in the last nonceTTL (sipguard sees both ways; the
//     nonces are kept, hashed, in the source's record, so the table is bounded and expires
//     with the engine's sources);
//   - a TCP handshake completed: a segment from the source acknowledging the initial
//     sequence number the PBX chose for that connection (SIP over TCP, and TLS, whose
//     contents cannot be read but whose handshake can).
//
// A verdict is proven when the packet that decided it was: a request with a matching nonce
// or on a handshaken connection, or, for a verdict on the PBX's answer, the request it
// answers. A TLS connection rate, counted on SYNs, is proven by a handshake from the source
// within proofWindow.

// Proof says how a source proved that it receives what is sent to its address.
type Proof uint8

// Kinds of proof.
const (
	ProofNone      Proof = iota
	ProofChallenge       // sent back the nonce the PBX challenged it with
	ProofTCP             // completed a TCP (or TLS) handshake with the PBX
)

func (p Proof) String() string {
	switch p {
	case ProofChallenge:
		return "it answered the PBX's challenge (sent back the nonce the PBX sent to its address)"
	case ProofTCP:
		return "it completed a TCP handshake with the PBX"
	}
	return ""
}

const (
	// nonceTTL is how long a nonce the PBX sent proves the source that sends it back.
	nonceTTL = 5 * time.Minute
	// proofWindow is how long a source's handshake proves its SYN-counted verdicts.
	proofWindow = 10 * time.Minute
	// nonceSlots are the last challenges to one address that are remembered.
	nonceSlots = 3
)

// nonceSeed keys the nonces' hashes: an attacker who can't know it can't make a nonce of
// its own collide with one the PBX sent.
var nonceSeed = maphash.MakeSeed()

// hash64 is b's hash: a nonce is kept as its hash (fixed size, no copy of hostile bytes).
func hash64(b []byte) uint64 {
	if h := maphash.Bytes(nonceSeed, b); h != 0 {
		return h
	}
	return 1 // 0 marks an empty slot
}

// challenged records a nonce the PBX sent to s.
func (s *source) challenged(nonce []byte, now int64) {
	if len(nonce) == 0 {
		return
	}
	h := hash64(nonce)
	for _, n := range s.nonces {
		if n == h {
			s.nonceAt = now
			return
		}
	}
	s.nonces[s.nonceI%nonceSlots] = h
	s.nonceI++
	s.nonceAt = now
}

// answers reports whether nonce is one the PBX sent to s within nonceTTL.
func (s *source) answers(nonce []byte, now int64) bool {
	if len(nonce) == 0 || s.nonceAt == 0 || now-s.nonceAt > int64(nonceTTL) {
		return false
	}
	h := hash64(nonce)
	for _, n := range s.nonces {
		if n == h {
			return true
		}
	}
	return false
}

// proved notes that s proved itself now.
func (s *source) proved(p Proof, now int64) {
	if p != ProofNone {
		s.proof, s.provenAt = p, now
	}
}

// recentProof is s's proof if it was made within proofWindow.
func (s *source) recentProof(now int64) Proof {
	if s.provenAt == 0 || now-s.provenAt > int64(proofWindow) {
		return ProofNone
	}
	return s.proof
}

// Prove notes that a completed its TCP handshake with the PBX at now (the capture loop).
func (e *Engine) Prove(a netip.Addr, now time.Time, p Proof) {
	e.source(a, now.UnixNano()).proved(p, now.UnixNano())
}

// Proven is a's proof made within proofWindow (ProofNone without one).
func (e *Engine) Proven(a netip.Addr, now time.Time) Proof {
	if s := e.sources[a]; s != nil {
		return s.recentProof(now.UnixNano())
	}
	return ProofNone
}

// handshaken reports whether the TCP segment ip, from a client to the PBX, acknowledges the
// initial sequence number the PBX sent it on that connection (its SYN-ACK, followed in the
// reverse stream): only a client that received the SYN-ACK knows it.
func (t *streams) handshaken(ip *ipInfo) bool {
	if ip.flags&(tcpSYN|tcpACK) != tcpACK {
		return false
	}
	rev := t.get(tcpKey{ip.dst, ip.src, ip.dport, ip.sport})
	if rev == nil || !rev.syn {
		return false
	}
	// Between the PBX's first byte and the next it will send: what it has sent so far.
	return int32(ip.ack-(rev.isn+1)) >= 0 && int32(rev.next-ip.ack) >= 0
}

// DefaultUnprovenBlockTime caps the block of an unproven source: long enough to stop a
// scan, short enough that a forged source (a resolver, a trunk) is back soon.
const DefaultUnprovenBlockTime = 10 * time.Minute

// proofNote ends a block's reason (the owner's listing, the fleet's alert): whether its
// source proved its address, so whether it is shared.
func proofNote(p Proof) string {
	switch p {
	case ProofChallenge:
		return " (proven: answered a challenge)"
	case ProofTCP:
		return " (proven: TCP handshake)"
	}
	return " (unproven source: local only)"
}

func offenseNote(n int, p Proof) string {
	if p == ProofNone {
		return ", unproven source: kept local and short"
	}
	return fmt.Sprintf(", offense %d", n)
}

// Shared says whether sipguard's block of p is one to share with the fleet: it holds a
// record of it whose source proved it receives (why says how). The CrowdSec machine pushes
// only those.
func (g *Guard) Shared(p netip.Prefix) (why string, ok bool) {
	g.smu.Lock()
	defer g.smu.Unlock()
	e := g.st.Blocks[p.Masked().String()]
	if e == nil || !e.Proven {
		return "", false
	}
	return e.Proof, true
}
