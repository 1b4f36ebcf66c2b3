package web

import (
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

// auth holds the login state: sessions and failed attempts, in memory (a restart logs
// everyone out, which is fine for a box managed by one or two people).
type auth struct {
	stateDir string
	now      func() time.Time
	limits   func() (session, lockout time.Duration, max int)
	// configHash is [web] password_hash: the way to set a password on an image without a
	// shell. A password set on the box (the state file) wins over it.
	configHash func() string

	verifyMu sync.Mutex // one login at a time: argon2 takes 64 MiB, and see login
	mu       sync.Mutex
	sessions map[string]*session
	fails    map[netip.Prefix]*failures // by lockKey
}

// lockKey is what a lockout applies to: an IPv4 address, or an IPv6 address's /64 (a host
// picks any address in its /64 at will, and would get a fresh count with each).
func lockKey(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

const cookieName = "appliance_session"

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
	errNoPassword = errors.New("no password is set: run `appliance web passwd` on the box")
	errBadLogin   = errors.New("wrong password")
)

// login checks a password from addr and returns a new session's cookie value and CSRF token.
func (a *auth) login(addr netip.Addr, pw string) (id, csrf string, lockedFor time.Duration, err error) {
	ttl, lockout, max := a.limits()
	// The lockout check, the verification and the count of a failure are one step: checked
	// apart, many attempts sent at once all pass the check before the first failure is
	// counted, and the lockout would not bound the guesses.
	a.verifyMu.Lock()
	defer a.verifyMu.Unlock()
	now := a.now()
	lk := lockKey(addr)
	a.mu.Lock()
	f := a.fails[lk]
	if f != nil && now.Before(f.until) {
		a.mu.Unlock()
		return "", "", f.until.Sub(now), errLocked
	}
	a.mu.Unlock()

	hash := a.passwordHash()
	if hash == "" {
		return "", "", 0, errNoPassword
	}
	ok := verifyPassword(hash, pw)

	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok {
		f := a.fails[lk]
		if f == nil || now.Sub(f.lastAt) > lockout {
			f = &failures{}
			a.fails[lk] = f
		}
		f.count++
		f.lastAt = now
		if f.count >= max {
			f.until, f.count = now.Add(lockout), 0
			return "", "", lockout, errLocked
		}
		return "", "", 0, errBadLogin
	}
	delete(a.fails, lk)
	for k, s := range a.sessions { // forget expired sessions
		if now.After(s.expires) {
			delete(a.sessions, k)
		}
	}
	id, csrf = token(), token()
	a.sessions[id] = &session{csrf: csrf, expires: now.Add(ttl)}
	return id, csrf, 0, nil
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
// request was made by a page elsewhere. A request with neither (curl, scripts) is left to the
// CSRF token.
func sameOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if o == "null" || err != nil || u.Host != r.Host {
			return fmt.Errorf("cross-site request refused (origin %q)", o)
		}
		return nil
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || u.Host != r.Host {
			return errors.New("cross-site request refused (referer)")
		}
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errors.New("cross-site request refused")
	}
	return nil
}
