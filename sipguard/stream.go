package sipguard

import (
	"bytes"
	"errors"
	"net/netip"
	"time"
)

// SIP over TCP is a byte stream: a message may span segments (a cracker splits each
// request so that no segment holds a whole header block), or one segment may hold several.
// A connection's slot is taken at its SYN (or first data), so its bytes are placed by
// sequence number: segments arriving out of order (forwarding on several cores reorders
// them) wait in the buffer for the gap to fill; retransmitted bytes are read once.
// Complete messages are read in place when nothing is pending; only an unterminated header
// block is copied; a body still to come is skipped by count, never buffered.
//
// Written here rather than taken from gopacket's tcpassembly: that decodes every packet
// through gopacket layers and allocates pages per segment (this path must not allocate),
// keeps its own flush timers, and bounds memory by pages rather than by connection; SIP
// needs only "next in sequence" and "how many bytes until the header block ends", in a
// fixed table of fixed buffers.

const (
	streamSlots = 256  // TCP connections followed at once (the longest idle makes room)
	streamBuf   = 4096 // bytes of one unterminated header block (beyond: read as truncated)
	streamIdle  = 2 * time.Minute
	streamHoles = 4 // out-of-order runs waiting for a gap to fill
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

type tcpKey struct {
	src, dst     netip.Addr
	sport, dport uint16
}

// span is a run of bytes received ahead of a gap, at buf offsets [from, to).
type span struct{ from, to int }

type stream struct {
	k    tcpKey
	next uint32 // sequence number of buf[n] (the next byte in order)
	isn  uint32 // the initial sequence number of its SYN, when syn
	syn  bool   // its SYN was seen (the PBX's SYN-ACK, for a reverse stream: proof.go)
	// proven: the client acknowledged the PBX's SYN-ACK on this connection (proof.go).
	proven bool
	last   int64
	skip   int // body bytes of an observed message still to come
	n      int // bytes held in order in buf
	ahead  [streamHoles]span
	nspan  int
	buf    [streamBuf]byte
}

// streams is a fixed table of followed connections.
type streams struct {
	idx  map[tcpKey]int32
	s    []stream
	free []int32
}

func newStreams() *streams {
	t := &streams{idx: make(map[tcpKey]int32, streamSlots), s: make([]stream, streamSlots), free: make([]int32, 0, streamSlots)}
	for i := streamSlots - 1; i >= 0; i-- {
		t.free = append(t.free, int32(i))
	}
	return t
}

func (t *streams) get(k tcpKey) *stream {
	if i, ok := t.idx[k]; ok {
		return &t.s[i]
	}
	return nil
}

// open takes a slot for k; when all are taken, the one idle longest is reused.
func (t *streams) open(k tcpKey, next uint32, now int64) *stream {
	var i int32
	if n := len(t.free); n > 0 {
		i, t.free = t.free[n-1], t.free[:n-1]
	} else {
		for j := range t.s {
			if t.s[j].last < t.s[i].last {
				i = int32(j)
			}
		}
		delete(t.idx, t.s[i].k)
	}
	st := &t.s[i]
	st.k, st.next, st.last, st.skip, st.n, st.nspan = k, next, now, 0, 0, 0
	st.isn, st.syn, st.proven = 0, false, false
	t.idx[k] = i
	return st
}

func (t *streams) close(st *stream) {
	if i, ok := t.idx[st.k]; ok && &t.s[i] == st {
		delete(t.idx, st.k)
		t.free = append(t.free, i)
	}
}

// expire frees the slots of connections idle since before.
func (t *streams) expire(before int64) {
	for k, i := range t.idx {
		if t.s[i].last < before {
			delete(t.idx, k)
			t.free = append(t.free, i)
		}
	}
}

// handleTCP reads one TCP segment of a SIP connection (g.mu held).
func (g *Guard) handleTCP(now time.Time, ip *ipInfo, pkt []byte) {
	k := tcpKey{ip.src, ip.dst, ip.sport, ip.dport}
	st := g.tcp.get(k)
	t := now.UnixNano()
	if ip.flags&tcpSYN != 0 {
		if st == nil {
			st = g.tcp.open(k, ip.seq+1, t)
		} else {
			st.next, st.n, st.skip, st.nspan = ip.seq+1, 0, 0, 0 // a new connection on the same ports
			st.proven = false
		}
		st.isn, st.syn = ip.seq, true
		return
	}
	if (st != nil && st.proven) || (g.tcp.handshaken(ip) && !g.eng.local(ip.src)) {
		ip.proof = ProofTCP
		g.eng.Prove(ip.src, now, ProofTCP)
	}
	p := ip.payload
	if len(p) > 0 {
		g.ring.add(ip.src, ip.dst, now, pkt)
	}
	switch {
	case len(p) == 0:
	case st == nil:
		// Followed from its middle (its SYN was not seen, or its slot was taken over).
		used, skip := g.consume(now, ip, p)
		st = g.tcp.open(k, ip.seq+uint32(len(p)), t)
		st.skip = skip
		st.n = copy(st.buf[:], p[used:])
	default:
		g.segment(now, ip, st, p)
	}
	if st == nil {
		return
	}
	st.proven = st.proven || ip.proof == ProofTCP
	st.last = t
	if ip.flags&(tcpFIN|tcpRST) != 0 {
		g.tcp.close(st)
	}
}

// segment places p, which starts at sequence number ip.seq, into st's stream and reads
// what became complete.
func (g *Guard) segment(now time.Time, ip *ipInfo, st *stream, p []byte) {
	off := int(int32(ip.seq - st.next)) // where p starts, from the next byte in order
	if off < 0 {
		if -off >= len(p) {
			return // all seen already: a retransmission
		}
		p, off = p[-off:], 0
	}
	if off > 0 {
		// Ahead of a gap: keep it in place until the gap fills.
		from := st.n + off - st.skip
		if st.skip > 0 || st.nspan == len(st.ahead) || from+len(p) > len(st.buf) {
			// Nowhere to keep it: the bytes of the gap are taken as lost.
			st.n, st.skip, st.nspan = 0, 0, 0
			st.next = ip.seq
			off = 0
		} else {
			copy(st.buf[from:], p)
			st.ahead[st.nspan] = span{from, from + len(p)}
			st.nspan++
			return
		}
	}
	st.next += uint32(len(p))
	if st.skip > 0 {
		n := min(st.skip, len(p))
		p, st.skip = p[n:], st.skip-n
		if len(p) == 0 {
			return
		}
	}
	if st.n == 0 && st.nspan == 0 {
		// Nothing pending: read in place, keep only an incomplete tail.
		used, skip := g.consume(now, ip, p)
		st.skip = skip
		st.n = copy(st.buf[:], p[used:])
		if st.n < len(p)-used {
			g.consume(now, ip, st.buf[:st.n]) // longer than any header block: as truncated
			st.n = 0
		}
		return
	}
	g.Stats.Reassembled++
	if st.n+len(p) > len(st.buf) {
		// A header block longer than any phone sends: read what there is, as truncated.
		n := copy(st.buf[st.n:], p)
		g.consume(now, ip, st.buf[:st.n+n])
		st.n, st.nspan = 0, 0
		return
	}
	st.n += copy(st.buf[st.n:], p)
	// Runs received ahead now joined to the bytes in order.
	for joined := true; joined; {
		joined = false
		for i := 0; i < st.nspan; i++ {
			if sp := st.ahead[i]; sp.from <= st.n {
				if sp.to > st.n {
					st.next += uint32(sp.to - st.n)
					st.n = sp.to
				}
				st.nspan--
				st.ahead[i] = st.ahead[st.nspan]
				joined = true
				break
			}
		}
	}
	used, skip := g.consume(now, ip, st.buf[:st.n])
	rest := st.n - used
	copy(st.buf[:], st.buf[used:st.n])
	for i := 0; i < st.nspan; i++ { // runs ahead move with the bytes
		st.ahead[i].from -= used
		st.ahead[i].to -= used
		copy(st.buf[st.ahead[i].from:st.ahead[i].to], st.buf[st.ahead[i].from+used:st.ahead[i].to+used])
	}
	st.n = rest
	if skip > 0 {
		st.skip, st.nspan = skip, 0 // a body is skipped by count; runs ahead of it are dropped
	}
}

// consume observes the complete messages at the start of b. It returns the bytes used (an
// unterminated header block at the end is not) and the body bytes of the last message
// observed that are still to come.
func (g *Guard) consume(now time.Time, ip *ipInfo, b []byte) (used, skip int) {
	for {
		for used < len(b) && (b[used] == '\r' || b[used] == '\n') { // keep-alive CRLFs
			used++
		}
		if used == len(b) {
			return used, 0
		}
		m := b[used:]
		if len(m) < streamBuf && bytes.IndexByte(m, '\n') < 0 {
			return used, 0 // not even the first line yet
		}
		err := Parse(m, &g.msg)
		switch {
		case errors.Is(err, ErrTruncated) && len(m) < streamBuf:
			return used, 0 // the rest of the header block is still to come
		case err != nil && !errors.Is(err, ErrTruncated):
			g.Stats.Malformed++
			return len(b), 0
		}
		g.Stats.SIP++
		if f := g.eng.ObserveProven(ip.src, ip.dst, now, &g.msg, ip.proof); f.Kind != KindNone {
			g.finding(now, f, m)
		}
		n := g.msg.BodyOff + max(g.msg.ContentLen, 0) // TCP requires Content-Length
		if n > len(m) {
			return len(b), n - len(m)
		}
		used += n
	}
}
