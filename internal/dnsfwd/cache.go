package dnsfwd

import (
	"container/list"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds on how long answers are kept: an ISP's resolver that hands out a week-long TTL
// must not pin an answer that long, and negative answers are kept briefly (RFC 2308 allows
// more, but a name that just got created should resolve soon).
const (
	maxTTL      = 24 * time.Hour
	maxNegative = 5 * time.Minute
)

// ednsSize is the UDP payload size the forwarder offers, upstream and to its clients (the
// DNS flag day 2020 value: no IP fragmentation).
const ednsSize = 1232

// Key flag bits: what besides the question changes an answer.
const (
	keyEDNS = 1 << iota // the client spoke EDNS: the answer carries an OPT record
	keyDO               // DNSSEC records wanted
	keyCD               // checking disabled
)

// keyOf is the cache key of r: its question name in lower-case wire form, type, class and
// the flags above. The fast path builds the same bytes from a packet (parseQuery).
func keyOf(r *dns.Msg) string {
	q := r.Question[0]
	buf := make([]byte, 0, 260)
	buf = buf[:cap(buf)]
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(q.Name)), buf, 0, nil, false)
	if err != nil {
		n = 0
	}
	var flags byte
	if o := r.IsEdns0(); o != nil {
		flags |= keyEDNS
		if o.Do() {
			flags |= keyDO
		}
	}
	if r.CheckingDisabled {
		flags |= keyCD
	}
	buf = binary.BigEndian.AppendUint16(buf[:n], q.Qtype)
	buf = binary.BigEndian.AppendUint16(buf, q.Qclass)
	return string(append(buf, flags))
}

// cache keeps answers packed, for their TTL, at most max of them, dropping the least
// recently used first. A hit is a copy of bytes with the ID, the question's case and the
// TTLs patched: no unpacking, no allocation. Times are the monotonic clock's, so a clock
// step (1970 to today) changes nothing. It is split in shards so that readers on both
// cores rarely wait on one lock.
type cache struct {
	seed   maphash.Seed
	shards []shard
}

type shard struct {
	mu  sync.Mutex
	max int
	ll  *list.List // front: most recently used
	m   map[string]*list.Element
}

// entry is one packed answer; never changed once made (a newer answer replaces it).
type entry struct {
	k       string
	wire    []byte   // ID 0, question in lower case, as the client with this key gets it
	ttls    []uint16 // offsets of the TTLs to age (every record's but OPT's)
	stored  time.Time
	expires time.Time
}

func newCache(max int) *cache {
	n := 1
	if max >= 1024 {
		n = 16
	}
	c := &cache{seed: maphash.MakeSeed(), shards: make([]shard, n)}
	for i := range c.shards {
		c.shards[i] = shard{max: (max + n - 1) / n, ll: list.New(), m: map[string]*list.Element{}}
	}
	return c
}

func (c *cache) shard(k []byte) *shard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.Bytes(c.seed, k)%uint64(len(c.shards))]
}

// lookup is the entry for k if it has not expired; k is not kept.
func (c *cache) lookup(k []byte, now time.Time) *entry {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	el := s.m[string(k)] // no allocation: the compiler looks up without converting
	if el == nil {
		return nil
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		s.ll.Remove(el)
		delete(s.m, e.k)
		return nil
	}
	s.ll.MoveToFront(el)
	return e
}

// render appends to dst the answer for a query with id, whose question section (name as
// the client wrote it, type, class) is question and whose RD bit is rd, with TTLs aged.
func (e *entry) render(dst []byte, id uint16, rd bool, question []byte, now time.Time) []byte {
	out := append(dst[:0], e.wire...)
	binary.BigEndian.PutUint16(out, id)
	out[2] &^= 1
	if rd {
		out[2] |= 1
	}
	copy(out[12:], question) // the same name but for case (0x20-randomising clients check it)
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, off := range e.ttls {
		ttl := binary.BigEndian.Uint32(out[off:])
		binary.BigEndian.PutUint32(out[off:], ttl-min(age, ttl))
	}
	return out
}

// get returns the answer for r with its TTLs aged, if it is kept and has not expired.
func (c *cache) get(k string, r *dns.Msg, now time.Time) (*dns.Msg, bool) {
	e := c.lookup([]byte(k), now)
	if e == nil {
		return nil, false
	}
	m := new(dns.Msg)
	if err := m.Unpack(e.render(nil, r.Id, r.RecursionDesired, nil, now)); err != nil {
		return nil, false
	}
	return m, true
}

// put keeps m for as long as its records may be kept; errors and TTL 0 are not kept.
func (c *cache) put(k string, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if !ok {
		return
	}
	e, err := newEntry(k, m, now, ttl)
	if err != nil {
		return
	}
	s := c.shard([]byte(k))
	s.mu.Lock()
	defer s.mu.Unlock()
	if el := s.m[k]; el != nil {
		el.Value = e
		s.ll.MoveToFront(el)
		return
	}
	s.m[k] = s.ll.PushFront(e)
	for s.ll.Len() > s.max {
		old := s.ll.Back()
		s.ll.Remove(old)
		delete(s.m, old.Value.(*entry).k)
	}
}

// newEntry packs m as the client of key k gets it: the question in lower case, an OPT
// record of the box's own (none of the upstream's options) when the client spoke EDNS.
func newEntry(k string, m *dns.Msg, now time.Time, ttl time.Duration) (*entry, error) {
	c := m.Copy()
	c.Id = 0
	c.Compress = true
	for i := range c.Question {
		c.Question[i].Name = strings.ToLower(c.Question[i].Name)
	}
	c.Extra = slices.DeleteFunc(c.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	if f := k[len(k)-1]; f&keyEDNS != 0 {
		c.SetEdns0(ednsSize, f&keyDO != 0)
	}
	wire, err := c.Pack()
	if err != nil {
		return nil, err
	}
	ttls, err := ttlOffsets(wire)
	if err != nil {
		return nil, err
	}
	return &entry{k: k, wire: wire, ttls: ttls, stored: now, expires: now.Add(ttl)}, nil
}

var errShort = errors.New("dnsfwd: message too short")

// ttlOffsets finds the TTL of every record in a packed message but OPT's (whose "TTL"
// holds flags).
func ttlOffsets(w []byte) ([]uint16, error) {
	if len(w) < 12 {
		return nil, errShort
	}
	qd := int(binary.BigEndian.Uint16(w[4:]))
	rrs := int(binary.BigEndian.Uint16(w[6:])) + int(binary.BigEndian.Uint16(w[8:])) + int(binary.BigEndian.Uint16(w[10:]))
	off := 12
	var err error
	for range qd {
		if off, err = skipName(w, off); err != nil {
			return nil, err
		}
		off += 4
	}
	var out []uint16
	for range rrs {
		if off, err = skipName(w, off); err != nil {
			return nil, err
		}
		if off+10 > len(w) {
			return nil, errShort
		}
		if binary.BigEndian.Uint16(w[off:]) != dns.TypeOPT {
			out = append(out, uint16(off+4))
		}
		off += 10 + int(binary.BigEndian.Uint16(w[off+8:]))
	}
	if off > len(w) {
		return nil, errShort
	}
	return out, nil
}

// skipName is the offset past the (possibly compressed) name at off.
func skipName(w []byte, off int) (int, error) {
	for off < len(w) {
		switch l := int(w[off]); {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			return off + 2, nil
		case l&0xc0 != 0:
			return 0, errors.New("dnsfwd: bad label")
		default:
			off += 1 + l
		}
	}
	return 0, errShort
}

func (c *cache) flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.ll.Init()
		clear(s.m)
		s.mu.Unlock()
	}
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.ll.Len()
		s.mu.Unlock()
	}
	return n
}

// cacheTTL is how long m may be kept: its shortest record TTL for an answer, the SOA's
// negative TTL for NXDOMAIN or an empty answer.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated || (m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError) {
		return 0, false
	}
	if m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 {
		least := uint32(1<<32 - 1)
		for _, rrs := range [][]dns.RR{m.Answer, m.Ns} {
			for _, rr := range rrs {
				least = min(least, rr.Header().Ttl)
			}
		}
		d := time.Duration(least) * time.Second
		return min(d, maxTTL), d > 0
	}
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			d := time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
			return min(d, maxNegative), d > 0
		}
	}
	return 0, false
}
