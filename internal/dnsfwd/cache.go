package dnsfwd

import (
	"container/list"
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

type cacheKey struct {
	name   string
	qtype  uint16
	qclass uint16
	do, cd bool
}

func keyOf(r *dns.Msg) cacheKey {
	q := r.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, cd: r.CheckingDisabled}
	if o := r.IsEdns0(); o != nil {
		k.do = o.Do()
	}
	return k
}

// cache keeps answers for their TTL, at most max of them, dropping the least recently used
// first. Times are the monotonic clock's, so a clock step (1970 to today) changes nothing.
type cache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // front: most recently used
	m   map[cacheKey]*list.Element
}

type entry struct {
	k       cacheKey
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), m: map[cacheKey]*list.Element{}}
}

// get returns a copy of the answer for k with its TTLs aged, if it has not expired.
func (c *cache) get(k cacheKey, now time.Time) (*dns.Msg, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.m[k]
	if el == nil {
		return nil, false
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.m, k)
		return nil, false
	}
	c.ll.MoveToFront(el)
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, rrs := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range rrs {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl -= min(age, h.Ttl)
			}
		}
	}
	return m, true
}

// put keeps m for as long as its records may be kept; errors and TTL 0 are not kept.
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &entry{k: k, msg: m.Copy(), stored: now, expires: now.Add(ttl)}
	if el := c.m[k]; el != nil {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*entry).k)
	}
}

func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.m)
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
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
