package setup

import (
	"crypto/subtle"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Errors of Guard.Check.
var (
	ErrWrongCode = errors.New("setup: wrong setup code")
	ErrLocked    = errors.New("setup: too many wrong setup codes from this address: wait 15 minutes")
)

const (
	maxTries   = 5                // wrong codes from one address before it is locked out
	lockout    = 15 * time.Minute // how long
	maxTracked = 256              // addresses whose wrong codes are counted
)

// normCode is what is compared: upper case, no dashes or spaces.
func normCode(s string) string {
	s = strings.ToUpper(s)
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, s)
}

// Guard checks setup codes, locking out an address after maxTries wrong ones.
type Guard struct {
	code string // normalised
	now  func() time.Time
	mu   sync.Mutex
	bad  map[netip.Prefix]*tries
}

type tries struct {
	n     int
	last  time.Time
	until time.Time
}

// NewGuard checks against code.
func NewGuard(code string) *Guard {
	return &Guard{code: normCode(code), now: time.Now, bad: map[netip.Prefix]*tries{}}
}

// Check is nil when code is the box's (case and dashes do not matter), ErrLocked while
// remote ("addr" or "addr:port") is locked out, else ErrWrongCode.
func (g *Guard) Check(remote, code string) error {
	k := lockKey(remote)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.bad[k]
	if t != nil && now.Before(t.until) {
		return ErrLocked
	}
	// Lengths may differ: ConstantTimeCompare then returns at once, which tells only the
	// length, and a code's length is no secret.
	if subtle.ConstantTimeCompare([]byte(normCode(code)), []byte(g.code)) == 1 {
		delete(g.bad, k)
		return nil
	}
	if t == nil {
		if !g.roomLocked(now) {
			// Every tracked address guessed wrong within the lockout: a newcomer is refused
			// rather than counted, so the guesses stay bounded when memory is.
			return ErrLocked
		}
		t = &tries{}
		g.bad[k] = t
	}
	if now.Sub(t.last) > lockout {
		t.n = 0
	}
	t.n++
	t.last = now
	if t.n >= maxTries {
		t.until = now.Add(lockout)
		t.n = 0
	}
	return ErrWrongCode
}

// roomLocked forgets addresses quiet for a lockout period and says whether one more fits.
func (g *Guard) roomLocked(now time.Time) bool {
	if len(g.bad) < maxTracked {
		return true
	}
	for k, t := range g.bad {
		if now.Sub(t.last) > lockout && !now.Before(t.until) {
			delete(g.bad, k)
		}
	}
	return len(g.bad) < maxTracked
}

// lockKey is an IPv4 address, or an IPv6 address's /64 (a host picks any address of its
// /64 at will), as the status page's login does.
func lockKey(remote string) netip.Prefix {
	a, err := netip.ParseAddr(remote)
	if err != nil {
		ap, perr := netip.ParseAddrPort(remote)
		if perr != nil {
			return netip.Prefix{} // one key for whatever is not an address
		}
		a = ap.Addr()
	}
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}
