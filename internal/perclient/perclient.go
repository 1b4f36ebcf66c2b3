// Package perclient rate-limits requests per client address, in bounded memory.
package perclient

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter gives each client address its own token bucket. It remembers at most max clients:
// when full, buckets idle longer than a refill are dropped first (they would be full again
// anyway), and failing that the whole table is reset, so a flood of spoofed sources costs
// memory once, never more.
type Limiter struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	max   int
	seen  map[netip.Addr]*client
}

type client struct {
	lim  *rate.Limiter
	last time.Time
}

// New allows perSecond requests a second (bursts of burst) from each of up to max clients.
func New(perSecond, burst, max int) *Limiter {
	return &Limiter{every: rate.Limit(perSecond), burst: burst, max: max, seen: map[netip.Addr]*client{}}
}

// Allow says whether a request from a may be served now.
func (l *Limiter) Allow(a netip.Addr) bool {
	now := time.Now()
	a = a.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.seen[a]
	if c == nil {
		if len(l.seen) >= l.max {
			l.prune(now)
		}
		c = &client{lim: rate.NewLimiter(l.every, l.burst)}
		l.seen[a] = c
	}
	c.last = now
	return c.lim.AllowN(now, 1)
}

func (l *Limiter) prune(now time.Time) {
	idle := time.Duration(float64(l.burst)/float64(l.every)*float64(time.Second)) + time.Second
	for a, c := range l.seen {
		if now.Sub(c.last) > idle {
			delete(l.seen, a)
		}
	}
	if len(l.seen) >= l.max {
		clear(l.seen)
	}
}
