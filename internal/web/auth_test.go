package web

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// A password spray as an attacker on the LAN or an admin network would send it: wrong
// passwords from many addresses of one /64 are locked out together; from many /64s they
// spend the box-wide budget, after which an address with wrong passwords behind it is
// refused unchecked and a fresh one gets one guess; the real admin, from an address that
// has not guessed wrong, logs in throughout; the budget comes back with time.
func TestLoginSpray(t *testing.T) {
	e := newEnv(t) // max_failures 3, lockout 1m: a budget of 12 wrong passwords a minute
	cheapPassword(t, e.dir, "correct horse")
	cfg := e.s.o.Config()
	cfg.Admin.Networks = append(cfg.Admin.Networks, config.Prefix{Prefix: netip.MustParsePrefix("2001:db8:bb::/48")})
	wrong := func(from string) int { return login(t, e, from, "wrong password", nil).Code }

	// Many /128s of the LAN's one /64: the /64 is locked after max_failures, whatever address.
	for i := 1; i <= 5; i++ {
		from := fmt.Sprintf("fd00:1::%x", 0x100+i)
		if got, want := wrong(from), map[bool]int{true: 429, false: 401}[i >= 3]; got != want {
			t.Errorf("wrong password #%d from %s: %d, want %d", i, from, got, want)
		}
	}
	if w := login(t, e, "fd00:1::999", "correct horse", nil); w.Code != 429 {
		t.Errorf("right password from a fresh address of the locked LAN /64: %d, want 429", w.Code)
	}

	// Many /64s of an admin network, two wrong passwords each: 3 spent above, so 4 /64s and
	// the first of the fifth's spend the 12.
	net64 := func(i int) string { return fmt.Sprintf("2001:db8:bb:%x::1", i) }
	for i := 1; i <= 4; i++ {
		for j := 0; j < 2; j++ {
			if got := wrong(net64(i)); got != 401 {
				t.Errorf("wrong password %d from %s within the budget: %d, want 401", j+1, net64(i), got)
			}
		}
	}
	if got := wrong(net64(5)); got != 401 {
		t.Errorf("the budget's last wrong password: %d, want 401", got)
	}
	// Spent: an address with a wrong password behind it is refused without a check (even
	// with the right password), and a fresh one that guesses wrong is locked out at once.
	w := login(t, e, net64(5), "correct horse", nil)
	if w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Errorf("right password from a /64 with a wrong one behind it, budget spent: %d %q, want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	for i := 6; i <= 9; i++ {
		if got := wrong(net64(i)); got != 429 {
			t.Errorf("wrong password from the fresh %s, budget spent: %d, want 429", net64(i), got)
		}
		if got := wrong(net64(i)); got != 429 {
			t.Errorf("second guess from %s, budget spent: %d, want 429", net64(i), got)
		}
	}
	if n := webLoginEvents(e)["web.login.spent"]; n != 1 {
		t.Errorf("%d events about the spent budget, want 1", n)
	}

	// The real admin, from addresses that guessed nothing: the office PC over IPv4, and its own /64.
	for _, from := range []string{lan, "2001:db8:bb:100::7"} {
		if w := login(t, e, from, "correct horse", nil); w.Code != 200 {
			t.Errorf("the admin from %s during the spray: %d %s, want 200", from, w.Code, w.Body)
		}
	}

	// A lockout period later the budget is whole again and the /64s are unlocked.
	e.now = e.now.Add(2 * time.Minute)
	if got := wrong(net64(1)); got != 401 {
		t.Errorf("wrong password after the lockout period: %d, want 401", got)
	}
	if w := login(t, e, "fd00:1::101", "correct horse", nil); w.Code != 200 {
		t.Errorf("right password from the LAN /64 after its lockout: %d, want 200", w.Code)
	}
}

// The failure table stays bounded however many addresses guess. Full, with the budget
// spent, it refuses new addresses too (the bound of last resort); a lockout period later
// the admin logs in.
func TestLoginFailuresBounded(t *testing.T) {
	e := newEnv(t)
	cheapPassword(t, e.dir, "correct horse")
	a := e.s.auth
	for i := 0; i < maxTracked+5000; i++ {
		k := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xcc, byte(i >> 16), byte(i >> 8), byte(i)}), 64)
		a.failed(k)
	}
	a.mu.Lock()
	n := len(a.fails)
	a.mu.Unlock()
	if n > maxTracked {
		t.Errorf("%d addresses' failures kept, want at most %d", n, maxTracked)
	}
	if w := login(t, e, lan, "correct horse", nil); w.Code != 429 {
		t.Errorf("a new address with the table full and the budget spent: %d %s, want 429", w.Code, w.Body)
	}
	e.now = e.now.Add(2 * time.Minute)
	if w := login(t, e, lan, "correct horse", nil); w.Code != 200 {
		t.Errorf("the admin a lockout period after the flood: %d %s", w.Code, w.Body)
	}
}

// The admin logs in while a spray from many /64s is in flight, its budget spent.
func TestLoginDuringConcurrentSpray(t *testing.T) {
	e := newEnv(t)
	cheapPassword(t, e.dir, "correct horse")
	cfg := e.s.o.Config()
	cfg.Admin.Networks = append(cfg.Admin.Networks, config.Prefix{Prefix: netip.MustParsePrefix("2001:db8:dd::/48")})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	n := map[int]int{}
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 500; j++ { // until stopped; bounded all the same
				select {
				case <-stop:
					return
				default:
				}
				c := login(t, e, fmt.Sprintf("2001:db8:dd:%x::%x", i, j+1), "wrong password", nil).Code
				mu.Lock()
				n[c]++
				mu.Unlock()
			}
		}()
	}
	labtest.WaitFor(t, "the spray to spend the budget", 10*time.Second, func() bool { return webLoginEvents(e)["web.login.spent"] > 0 })
	admin := login(t, e, lan, "correct horse", nil)
	close(stop)
	wg.Wait()
	if admin.Code != 200 {
		t.Errorf("the admin during the spray: %d %s", admin.Code, admin.Body)
	}
	// Wrong-password answers (401) come only within the budget (12); past it a /64 gets one
	// guess, answered with its lockout (429).
	if n[200] != 0 || n[401] > 12 {
		t.Errorf("the spray's answers %v: want no login and at most 12 wrong-password answers", n)
	}
}

// cheapPassword sets pw as the login's password with an argon2id hash of tiny cost (64 KiB,
// one pass): the real check, at a cost a spray of dozens of logins can run in a test.
func cheapPassword(t *testing.T, dir, pw string) {
	t.Helper()
	salt := []byte("0123456789abcdef")
	b64 := base64.RawStdEncoding
	h := fmt.Sprintf("$argon2id$v=%d$m=64,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt),
		b64.EncodeToString(argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)))
	if err := os.WriteFile(filepath.Join(dir, PasswordFile), []byte(h+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
