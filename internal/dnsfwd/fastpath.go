package dnsfwd

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The UDP fast path reads a plain query straight from the packet (one question, at most an
// OPT record), answers it from the cache by patching a packed answer, and answers REFUSED
// without unpacking anything. Whatever it cannot read goes to the slow path (slow): local
// names and kept answers in the reader itself, a resolver's through a bounded pool of
// workers.

// wireQuery is what the fast path reads from a query packet.
type wireQuery struct {
	id       uint16
	rd       bool
	question []byte // the question section as sent (name, type, class)
	max      int    // the largest UDP answer the client takes
}

// parseQuery reads p as a plain query, appending its cache key (keyOf's bytes) to key.
func parseQuery(p, key []byte) (wireQuery, []byte, bool) {
	var q wireQuery
	if len(p) < 17 {
		return q, key, false
	}
	flags := binary.BigEndian.Uint16(p[2:])
	const qr, opcode, tc = 1 << 15, 0xf << 11, 1 << 9
	if flags&(qr|opcode|tc) != 0 || binary.BigEndian.Uint16(p[4:]) != 1 ||
		binary.BigEndian.Uint16(p[6:]) != 0 || binary.BigEndian.Uint16(p[8:]) != 0 {
		return q, key, false
	}
	ar := binary.BigEndian.Uint16(p[10:])
	if ar > 1 {
		return q, key, false
	}
	off := 12
	for {
		if off >= len(p) {
			return q, key, false
		}
		l := int(p[off])
		if l&0xc0 != 0 || off+1+l > len(p) || off-12+1+l > 255 {
			return q, key, false
		}
		if l == 0 {
			key = append(key, 0)
			off++
			break
		}
		key = append(key, byte(l))
		for _, b := range p[off+1 : off+1+l] {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			key = append(key, b)
		}
		off += 1 + l
	}
	if off+4 > len(p) {
		return q, key, false
	}
	key = append(key, p[off:off+4]...)
	q.question = p[12 : off+4]
	off += 4
	var kf byte
	if flags&(1<<4) != 0 {
		kf |= keyCD
	}
	q.max = dns.MinMsgSize
	if ar == 1 {
		// Only a root-owned OPT, EDNS version 0.
		if off+11 > len(p) || p[off] != 0 || binary.BigEndian.Uint16(p[off+1:]) != dns.TypeOPT || p[off+6] != 0 {
			return q, key, false
		}
		q.max = max(int(binary.BigEndian.Uint16(p[off+3:])), dns.MinMsgSize)
		kf |= keyEDNS
		if p[off+7]&0x80 != 0 {
			kf |= keyDO
		}
		off += 11 + int(binary.BigEndian.Uint16(p[off+9:]))
	}
	if off != len(p) {
		return q, key, false
	}
	q.id = binary.BigEndian.Uint16(p)
	q.rd = flags&(1<<8) != 0
	return q, append(key, kf), true
}

// refusal appends to dst a header-and-question answer to the query p with rcode: REFUSED
// (over the limit, not a client) or SERVFAIL (too busy). False when p is not a query.
func refusal(dst, p []byte, q wireQuery, parsed bool, rcode int) ([]byte, bool) {
	if len(p) < 12 || p[2]&0x80 != 0 {
		return dst, false
	}
	var out []byte
	if parsed {
		out = append(dst[:0], p[:12+len(q.question)]...)
		binary.BigEndian.PutUint16(out[4:], 1)
	} else {
		out = append(dst[:0], p[:12]...)
		binary.BigEndian.PutUint16(out[4:], 0)
	}
	out[2] = out[2]&^(1<<2|1<<1) | 0x80 // QR; not AA, not TC; opcode and RD as asked
	out[3] = 0x80 | byte(rcode)         // RA
	clear(out[6:12])
	return out, true
}

// udpReader serves one UDP socket from one goroutine, a batch of packets at a time
// (recvmmsg and sendmmsg: under load, one system call each way for many queries).
type udpReader struct {
	f    *Forwarder
	pc   *net.UDPConn
	out  []byte // the answer being made
	key  []byte
	cur  net.Addr       // the sender of the packet being answered
	outs []ipv4.Message // the batch's answers; ipv6.Message is the same type
	nout int
}

// batch is how many packets one system call reads or writes at most.
const batch = 32

func (f *Forwarder) newUDPReader(pc *net.UDPConn) *udpReader {
	u := &udpReader{f: f, pc: pc, out: make([]byte, 0, 4096), key: make([]byte, 0, 264), outs: make([]ipv4.Message, batch)}
	for i := range u.outs {
		u.outs[i].Buffers = [][]byte{make([]byte, 0, 4096)}
	}
	return u
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn both do.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serve reads queries until the socket is closed.
func (u *udpReader) serve() error {
	var bc batchConn = ipv4.NewPacketConn(u.pc)
	if la, ok := u.pc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
		bc = ipv6.NewPacketConn(u.pc)
	}
	in := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)} // no query is bigger (EDNS's largest is 4096)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		u.nout = 0
		for i := range n {
			ua, ok := in[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			u.cur = in[i].Addr
			u.packet(in[i].Buffers[0][:in[i].N], ua.AddrPort())
		}
		for sent := 0; sent < u.nout; {
			k, err := bc.WriteBatch(u.outs[sent:u.nout], 0)
			if err != nil {
				k = max(k, 1) // that answer's client cannot be reached: the next ones may
			}
			sent += k
		}
	}
}

// send queues b (copied) as the answer to the packet being answered.
func (u *udpReader) send(b []byte) {
	if u.nout == len(u.outs) {
		return
	}
	m := &u.outs[u.nout]
	m.Buffers[0] = append(m.Buffers[0][:0], b...)
	m.Addr = u.cur
	u.nout++
}

// packet answers one UDP packet from the fast path, or hands it to the slow path.
func (u *udpReader) packet(p []byte, from netip.AddrPort) {
	f := u.f
	f.stats.queries.Add(1)
	a := from.Addr().Unmap()
	q, key, ok := parseQuery(p, u.key[:0])
	u.key = key
	if !f.lim.Allow(a) {
		f.noteLimited(a)
		u.refuse(p, q, ok, dns.RcodeRefused)
		return
	}
	if !f.answers(a) {
		f.stats.refused.Add(1)
		u.refuse(p, q, ok, dns.RcodeRefused)
		return
	}
	if ok {
		now := time.Now()
		if e := f.cache.lookup(key, now); e != nil && len(e.wire) <= q.max {
			u.out = e.render(u.out, q.id, q.rd, q.question, now)
			f.stats.cached.Add(1)
			u.send(u.out)
			return
		}
	}
	u.slow(p, from, a)
}

func (u *udpReader) refuse(p []byte, q wireQuery, parsed bool, rcode int) {
	var ok bool
	if u.out, ok = refusal(u.out, p, q, parsed, rcode); ok {
		u.send(u.out)
	}
}

// slow unpacks and answers a packet the fast path could not, in this goroutine when the
// box has the answer, else in one of a bounded number that wait on resolvers.
func (u *udpReader) slow(p []byte, from netip.AddrPort, a netip.Addr) {
	f := u.f
	r := new(dns.Msg)
	if err := r.Unpack(p); err != nil {
		u.refuse(p, wireQuery{}, false, dns.RcodeFormatError)
		return
	}
	if resp := f.answerHere(r, a); resp != nil {
		u.write(finish(r, resp, true))
		return
	}
	if !f.acquire(a) {
		u.write(finish(r, f.busyAnswer(r, a), true))
		return
	}
	f.dispatch(job{r: r, pc: u.pc, from: from, a: a})
}

// job is a UDP query waiting on a resolver, holding a slot.
type job struct {
	r    *dns.Msg
	pc   *net.UDPConn
	from netip.AddrPort
	a    netip.Addr
}

// workerIdle is how long a worker with nothing to do stays for the next query.
const workerIdle = 10 * time.Second

// dispatch hands j to an idle worker, or starts one: never more workers than slots, and
// j holds a slot, so one is free or about to be.
func (f *Forwarder) dispatch(j job) {
	for {
		select {
		case f.jobs <- j:
			return
		default:
		}
		if n := f.workers.Load(); n < maxInflight && f.workers.CompareAndSwap(n, n+1) {
			f.wg.Add(1)
			go f.worker(j)
			return
		}
		runtime.Gosched() // a worker is between its last query and the next
	}
}

// worker answers jobs until it has been idle for workerIdle or the forwarder stops.
func (f *Forwarder) worker(j job) {
	defer f.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		resp := finish(j.r, f.answerUpstream(j.r), true)
		f.release(j.a)
		resp.Compress = true
		if wire, err := resp.Pack(); err == nil {
			_, _ = j.pc.WriteToUDPAddrPort(wire, j.from)
		}
		idle.Reset(workerIdle)
		select {
		case j = <-f.jobs:
		case <-idle.C:
			f.workers.Add(-1)
			return
		case <-f.stopping:
			f.workers.Add(-1)
			return
		}
	}
}

func (u *udpReader) write(m *dns.Msg) {
	m.Compress = true
	var err error
	if u.out, err = m.PackBuffer(u.out[:cap(u.out)]); err == nil {
		u.send(u.out)
	}
}
