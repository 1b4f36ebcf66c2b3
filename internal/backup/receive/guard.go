package receive

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The endpoint's limits: a LAN device can neither hold it open nor guess passwords at speed.
// A PBX pushes with one or two connections at a time; OpenSSH's sshd allows 10 logins in
// progress (MaxStartups) and 2 minutes to log in.
const (
	maxConns           = 32   // connections at once, logged in or not
	maxUnauth          = 16   // connections at once that have not logged in yet
	maxUnauthPerSource = 4    // the same, from one source
	maxSources         = 4096 // sources remembered for lockouts and good logins
	goodFor            = 30 * 24 * time.Hour
)

// handshakeTimeout is the time to log in, after which the connection is closed.
var handshakeTimeout = 15 * time.Second

// The global limit on wrong passwords, from all sources together: a device that takes new
// addresses (IPv6 privacy addresses, spoofed MACs on the LAN) gets no more guesses. Over
// it, only sources that logged in before may try a password.
var (
	globalFailEvery = 2 * time.Second
	globalFailBurst = 10
)

// guard keeps the endpoint's connection counts, the wrong passwords per source and the
// sources that logged in; what it refuses is logged in summaries.
type guard struct {
	now    func() time.Time
	limits func() (maxFailures int, lockout time.Duration)
	log    *slog.Logger

	mu       sync.Mutex
	conns    int
	unauth   int
	unauthBy map[netip.Prefix]int
	fails    map[netip.Prefix]*failures
	good     map[netip.Prefix]time.Time // last good login
	global   *rate.Limiter
	refused  map[string]int // why -> connections or logins refused since the last summary
	sources  map[netip.Prefix]bool
}

type failures struct {
	count  int       // wrong passwords (and checks under way) in the current series
	lastAt time.Time // of the last one
	until  time.Time // locked out until
}

func newGuard(limits func() (int, time.Duration), log *slog.Logger) *guard {
	return &guard{now: time.Now, limits: limits, log: log, unauthBy: map[netip.Prefix]int{}, fails: map[netip.Prefix]*failures{},
		good: map[netip.Prefix]time.Time{}, global: rate.NewLimiter(rate.Every(globalFailEvery), globalFailBurst),
		refused: map[string]int{}, sources: map[netip.Prefix]bool{}}
}

// sourceOf is what a lockout applies to: the client's address. Not its IPv6 /64: the whole
// LAN is usually one /64, and a guesser there would lock the PBX out; a guesser hopping
// addresses meets the global limit instead.
func sourceOf(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	return netip.PrefixFrom(ip, ip.BitLen())
}

// admit takes a new connection from src, or says why not.
func (g *guard) admit(src netip.Prefix) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	why := ""
	switch {
	case g.lockedLocked(src) > 0:
		why = "locked out after wrong passwords"
	case g.conns >= maxConns:
		why = fmt.Sprintf("over %d connections at once", maxConns)
	case g.unauth >= maxUnauth:
		why = fmt.Sprintf("over %d connections logging in at once", maxUnauth)
	case g.unauthBy[src] >= maxUnauthPerSource:
		why = fmt.Sprintf("over %d connections logging in at once from one source", maxUnauthPerSource)
	}
	if why != "" {
		g.refuseLocked(why, src)
		return false
	}
	g.conns++
	g.unauth++
	g.unauthBy[src]++
	return true
}

// loggedIn moves a connection from logging in to logged in.
func (g *guard) loggedIn(src netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropUnauthLocked(src)
}

// closed ends a connection admitted by admit.
func (g *guard) closed(src netip.Prefix, loggedIn bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conns--
	if !loggedIn {
		g.dropUnauthLocked(src)
	}
}

func (g *guard) dropUnauthLocked(src netip.Prefix) {
	g.unauth--
	if g.unauthBy[src]--; g.unauthBy[src] <= 0 {
		delete(g.unauthBy, src)
	}
}

// locked is how long src is still locked out.
func (g *guard) locked(src netip.Prefix) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lockedLocked(src)
}

// lockedLocked is locked with g.mu held.
func (g *guard) lockedLocked(src netip.Prefix) time.Duration {
	if f := g.fails[src]; f != nil {
		if d := f.until.Sub(g.now()); d > 0 {
			return d
		}
	}
	return 0
}

// startPassword is asked before a password from src is checked: it counts the attempt
// as a wrong one at once (so attempts sent together cannot pass the limit) and says
// whether it may be checked at all.
func (g *guard) startPassword(src netip.Prefix) error {
	max, lockout := g.limits()
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if d := g.lockedLocked(src); d > 0 {
		g.refuseLocked("locked out after wrong passwords", src)
		return fmt.Errorf("locked out for %s after wrong passwords", d.Round(time.Second))
	}
	if _, ok := g.good[src]; !ok && g.global.TokensAt(now) < 1 {
		g.refuseLocked("over the endpoint's limit of wrong passwords", src)
		return fmt.Errorf("too many wrong passwords on the endpoint: try again later")
	}
	f := g.fails[src]
	if f == nil || (now.Sub(f.lastAt) > lockout && !now.Before(f.until)) {
		if f == nil && len(g.fails) >= maxSources {
			g.forgetLocked(now, lockout)
		}
		f = &failures{}
		g.fails[src] = f
	}
	if f.count >= max {
		g.refuseLocked("locked out after wrong passwords", src)
		return fmt.Errorf("too many wrong passwords")
	}
	f.count++
	f.lastAt = now
	return nil
}

// passwordDone settles an attempt begun by startPassword.
func (g *guard) passwordDone(src netip.Prefix, ok bool) {
	max, lockout := g.limits()
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if ok {
		delete(g.fails, src)
		if _, known := g.good[src]; !known && len(g.good) >= maxSources {
			for k, t := range g.good {
				if now.Sub(t) > goodFor {
					delete(g.good, k)
				}
			}
		}
		if len(g.good) < maxSources {
			g.good[src] = now
		}
		return
	}
	g.global.AllowN(now, 1)
	if f := g.fails[src]; f != nil && f.count >= max && !now.Before(f.until) {
		f.until, f.count = now.Add(lockout), 0
		g.log.Warn(fmt.Sprintf("backup endpoint: %s locked out for %s after %d wrong passwords", src.Addr(), lockout, max))
	}
}

// forgetLocked drops the series that are over. Called with g.mu held.
func (g *guard) forgetLocked(now time.Time, lockout time.Duration) {
	for k, f := range g.fails {
		if now.Sub(f.lastAt) > lockout && !now.Before(f.until) {
			delete(g.fails, k)
		}
	}
}

func (g *guard) refuseLocked(why string, src netip.Prefix) {
	g.refused[why]++
	if len(g.sources) < 8 {
		g.sources[src] = true
	} else {
		g.sources[netip.Prefix{}] = true // "and others"
	}
}

// summarize logs what was refused since the last call, in one line.
func (g *guard) summarize(every time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.refused) == 0 {
		return
	}
	var whys, from []string
	for why, n := range g.refused {
		whys = append(whys, fmt.Sprintf("%d %s", n, why))
	}
	others := false
	for p := range g.sources {
		if p.IsValid() {
			from = append(from, p.Addr().String())
		} else {
			others = true
		}
	}
	sort.Strings(whys)
	sort.Strings(from)
	if others {
		from = append(from, "others")
	}
	g.log.Warn(fmt.Sprintf("backup endpoint: refused in the last %s: %s (from %s)", every, strings.Join(whys, ", "), strings.Join(from, ", ")))
	clear(g.refused)
	clear(g.sources)
}
