package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/time/rate"

	"github.com/officeedge/appliance/internal/store"
)

// PasswordFile is where `appliance web passwd` keeps the login's hash, in the state directory.
const PasswordFile = "web-password"

// argon2id parameters: RFC 9106's second recommended option (64 MiB), with 2 passes and 2
// lanes to stay well under a second on a Raspberry Pi.
const (
	argonTime    = 2
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// HashPassword returns the argon2id hash of pw in the usual $argon2id$ encoding.
func HashPassword(pw string) (string, error) {
	if len(pw) < 8 {
		return "", errors.New("web: the password must have at least 8 characters")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// SetPassword writes the hash of pw into the state directory (atomically, mode 0600).
func SetPassword(stateDir, pw string) error {
	h, err := HashPassword(pw)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("web: %w", err)
	}
	return store.WriteFile(stateDir+"/"+PasswordFile, []byte(h+"\n"), 0o600)
}

// verifyPassword checks pw against an encoded argon2id hash, in constant time.
func verifyPassword(encoded, pw string) bool {
	parts := strings.Split(strings.TrimSpace(encoded), "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t == 0 || t > 10 || p == 0 { // argon2 panics on t or p of 0
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

type session struct {
	csrf    string
	expires time.Time
}

type failures struct {
	count  int
	until  time.Time // locked out until
	lastAt time.Time
}

// The box-wide budget of wrong passwords, on top of each address's lockout: a token bucket
// of globalFactor times max_failures, refilled over one lockout period. A host that can
// use many addresses (a LAN host takes what IPv4 addresses it likes, an admin network may
// be a /48) would otherwise get max_failures guesses from each.
//
// Once the budget is spent the real admin must still get in, and nothing tells the admin
// from the attacker before the password is checked. So while it is spent: an address with
// wrong passwords in its count is refused without a check (Retry-After: until the bucket
// has a token again), and an address with none still has its password checked, but a
// wrong one locks it out at once. A spray then gets at most the budget plus one guess per
// address per lockout period, and an admin at an address that has not guessed wrong (the
// office PC, over IPv4 or its own /64) logs in whatever the spray. The price: an admin who
// mistypes during a spray waits for the budget, or for the lockout.
const globalFactor = 4

// maxTracked bounds the addresses (by lockKey) whose wrong passwords are counted (about
// 100 bytes each). While the budget is spent and the table is full, a new address is
// refused too: the guesses stay bounded when memory is.
const maxTracked = 1 << 16

// lockKey is what a lockout applies to: an IPv4 address, or an IPv6 address's /64, on the
// LAN as elsewhere (a host picks any address of its /64 at will, and would get a fresh
// count with each). Hosts of one IPv6 LAN share a lockout; each of them keeps its IPv4
// address, and the budget above lets a clean address in.
func lockKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() || a.IsLoopback() {
		return netip.PrefixFrom(a, a.BitLen())
	}
	p, _ := a.Prefix(64)
	return p
}

// maxChecks bounds the argon2 checks running at once: each takes 64 MiB, and with one
// client address allowed one check at a time (see takeTurn), a stream of wrong passwords
// from one address leaves a slot free for the real admin's login.
const maxChecks = 2

// auth holds the login state: sessions and failed attempts, in memory (a restart logs
// everyone out, which is fine for a box managed by one or two people).
type auth struct {
	stateDir string
	now      func() time.Time
	limits   func() (session, lockout time.Duration, max int)
	// configHash is [web] password_hash: the way to set a password on an image without a
	// shell. A password set on the box (the state file) wins over it.
	configHash func() string
	keyOf      func(netip.Addr) netip.Prefix // what a lockout applies to: lockKey
	verify     func(hash, pw string) bool    // verifyPassword; a test's hook
	checks     chan struct{}                 // a slot per argon2 check running, maxChecks of them

	mu        sync.Mutex
	sessions  map[string]*session
	fails     map[netip.Prefix]*failures // by keyOf
	turns     map[netip.Prefix]*turn     // by keyOf, while a login from it is being handled
	global    *rate.Limiter              // the box-wide budget of wrong passwords (see globalFactor)
	globalFor [2]int64                   // the lockout and max_failures global was made for
	spent     bool                       // the budget ran out and has had no token since (told once a run-out)
	swept     time.Time                  // when forgetFailures last ran
}

// turn lets one login at a time from a client address be checked; refs counts the logins
// holding or waiting for it, so it is forgotten when none does.
type turn struct {
	ch   chan struct{}
	refs int
}

// newAuth makes the login state; keyOf defaults to the address itself.
func newAuth(stateDir string, now func() time.Time) *auth {
	return &auth{stateDir: stateDir, now: now, verify: verifyPassword, checks: make(chan struct{}, maxChecks),
		sessions: map[string]*session{}, fails: map[netip.Prefix]*failures{}, turns: map[netip.Prefix]*turn{},
		keyOf: lockKey}
}

// budget is the box-wide limiter for the limits in force (made afresh when they change).
// Called with a.mu held.
func (a *auth) budget(lockout time.Duration, max int) *rate.Limiter {
	if f := [2]int64{int64(lockout), int64(max)}; a.global == nil || a.globalFor != f {
		n := globalFactor * max
		a.global, a.globalFor = rate.NewLimiter(rate.Every(lockout/time.Duration(n)), n), f // full
	}
	return a.global
}

// budgetRefused says whether a login from key is refused without a check because the
// box-wide budget is spent, and for how long.
func (a *auth) budgetRefused(k netip.Prefix) (time.Duration, bool) {
	_, lockout, max := a.limits()
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	g := a.budget(lockout, max)
	tokens := g.TokensAt(now)
	if tokens >= 1 {
		return 0, false
	}
	f := a.fails[k]
	counted := f != nil && now.Sub(f.lastAt) <= lockout && f.count > 0
	if !counted && (f != nil || len(a.fails) < maxTracked) {
		return 0, false
	}
	return time.Duration((1 - tokens) / float64(g.Limit()) * float64(time.Second)), true
}

// cookieName has the __Host- prefix: browsers keep such a cookie only when it came over
// HTTPS with Secure and Path=/ and no Domain, so nothing on plain HTTP can plant or
// overwrite it.
const cookieName = "__Host-appliance_session"

func token() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (a *auth) passwordSet() bool {
	return a.passwordHash() != ""
}

// passwordHash is the login's argon2id hash, "" when none is set.
func (a *auth) passwordHash() string {
	if b, err := os.ReadFile(a.stateDir + "/" + PasswordFile); err == nil {
		return string(b)
	}
	if a.configHash != nil {
		return a.configHash()
	}
	return ""
}

var (
	errLocked     = errors.New("too many wrong passwords from this address: locked out")
	errBusy       = busyError{}
	errNoPassword = errors.New("no password is set: run `appliance web passwd` on the box")
	errBadLogin   = errors.New("wrong password")
)

// busyError is the refusal while the box-wide budget is spent; it is an errLocked (a 429
// with Retry-After) with words of its own.
type busyError struct{}

func (busyError) Error() string {
	return "too many wrong passwords on this box from several addresses: logins with wrong passwords behind them are refused"
}
func (busyError) Is(t error) bool { return t == errLocked }

// loginResult is what a login attempt gave besides its error.
type loginResult struct {
	id, csrf    string        // the new session's cookie value and CSRF token
	lockedFor   time.Duration // with errLocked: how long the address stays locked out
	lockStarted bool          // this attempt started the lockout (the one to tell people about)
	firstWrong  bool          // with errBadLogin: the first wrong password of a series
	spentNow    bool          // this attempt spent the box-wide budget (the one to tell people about)
}

// login checks a password from addr. A locked-out address is refused before any waiting or
// hashing; logins from one address are checked one at a time, so that attempts sent all at
// once are counted as they are checked and the lockout bounds the guesses.
func (a *auth) login(ctx context.Context, addr netip.Addr, pw string) (loginResult, error) {
	k := a.keyOf(addr)
	refused := func() (loginResult, error) { // a nil error: not refused
		if d, ok := a.lockedOut(k); ok {
			return loginResult{lockedFor: d}, errLocked
		}
		if d, ok := a.budgetRefused(k); ok {
			return loginResult{lockedFor: d}, errBusy
		}
		return loginResult{}, nil
	}
	if r, err := refused(); err != nil {
		return r, err
	}
	release, err := a.takeTurn(ctx, k)
	if err != nil {
		return loginResult{}, err
	}
	defer release()
	if r, err := refused(); err != nil { // the attempt ahead of this one may have locked it
		return r, err
	}
	hash := a.passwordHash()
	if hash == "" {
		return loginResult{}, errNoPassword
	}
	ok, err := a.check(ctx, hash, pw)
	if err != nil {
		return loginResult{}, err
	}
	if !ok {
		return a.failed(k)
	}
	return a.newSession(k), nil
}

// lockedOut says for how long key is still locked out.
func (a *auth) lockedOut(k netip.Prefix) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if f := a.fails[k]; f != nil && now.Before(f.until) {
		return f.until.Sub(now), true
	}
	return 0, false
}

// takeTurn waits until no other login from key is being checked; release ends the turn.
func (a *auth) takeTurn(ctx context.Context, k netip.Prefix) (release func(), err error) {
	a.mu.Lock()
	t := a.turns[k]
	if t == nil {
		t = &turn{ch: make(chan struct{}, 1)}
		a.turns[k] = t
	}
	t.refs++
	a.mu.Unlock()
	drop := func() {
		a.mu.Lock()
		if t.refs--; t.refs == 0 {
			delete(a.turns, k)
		}
		a.mu.Unlock()
	}
	select {
	case t.ch <- struct{}{}:
		return func() { <-t.ch; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, fmt.Errorf("web: login abandoned while waiting: %w", ctx.Err())
	}
}

// check verifies pw in one of the maxChecks slots.
func (a *auth) check(ctx context.Context, hash, pw string) (bool, error) {
	select {
	case a.checks <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("web: login abandoned while waiting: %w", ctx.Err())
	}
	defer func() { <-a.checks }()
	return a.verify(hash, pw), nil
}

// failed counts a wrong password from key, locking it out at the limit, or at once when
// the box-wide budget has no token left for it.
func (a *auth) failed(k netip.Prefix) (loginResult, error) {
	_, lockout, max := a.limits()
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	inBudget := a.budget(lockout, max).AllowN(now, 1)
	var r loginResult
	if inBudget {
		a.spent = false
	} else if !a.spent {
		a.spent, r.spentNow = true, true
	}
	f := a.fails[k]
	if f == nil || now.Sub(f.lastAt) > lockout {
		if now.Sub(a.swept) >= time.Second { // at most once a second: a sweep reads the whole table
			a.forgetFailures(now, lockout)
		}
		f = &failures{}
		if len(a.fails) < maxTracked {
			a.fails[k] = f
		}
	}
	f.count++
	f.lastAt = now
	if f.count >= max || !inBudget {
		f.until, f.count = now.Add(lockout), 0
		r.lockedFor, r.lockStarted = lockout, inBudget
		return r, errLocked
	}
	r.firstWrong = f.count == 1
	return r, errBadLogin
}

// forgetFailures drops the counts that are over: many addresses guessing must not grow the
// map for ever. Called with a.mu held.
func (a *auth) forgetFailures(now time.Time, lockout time.Duration) {
	a.swept = now
	for k, f := range a.fails {
		if now.Sub(f.lastAt) > lockout && !now.Before(f.until) {
			delete(a.fails, k)
		}
	}
}

// newSession clears key's failures and opens a session.
func (a *auth) newSession(k netip.Prefix) loginResult {
	ttl, _, _ := a.limits()
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	delete(a.fails, k)
	for id, s := range a.sessions { // forget expired sessions
		if now.After(s.expires) {
			delete(a.sessions, id)
		}
	}
	r := loginResult{id: token(), csrf: token()}
	a.sessions[r.id] = &session{csrf: r.csrf, expires: now.Add(ttl)}
	return r
}

// session returns the request's valid session, if any.
func (a *auth) session(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[c.Value]
	if s == nil || a.now().After(s.expires) {
		return nil
	}
	return s
}

func (a *auth) logout(r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
}

// sameOrigin rejects cross-site requests: a browser always sends Origin on a POST (and
// Referer unless told not to); when it names another site than the one it talks to, the
// request was made by a page elsewhere. Over HTTPS the origin must be HTTPS too: a page of
// the same host over plain HTTP could have been changed on its way. A request with neither
// (curl, scripts) is left to the CSRF token.
func sameOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" {
		if o == "null" || !sameSite(r, o) {
			return fmt.Errorf("cross-site request refused (origin %q)", o)
		}
		return nil
	}
	if ref := r.Header.Get("Referer"); ref != "" && !sameSite(r, ref) {
		return errors.New("cross-site request refused (referer)")
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errors.New("cross-site request refused")
	}
	return nil
}

// sameSite says whether a URL (an Origin, a Referer) names the host and scheme r came to.
func sameSite(r *http.Request, raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host != r.Host {
		return false
	}
	return r.TLS == nil || u.Scheme == "https"
}
