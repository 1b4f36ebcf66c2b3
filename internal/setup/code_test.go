package setup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/setupcode"
)

// The code is made once and kept; it is checked without regard to case or dashes, and an
// address that guesses wrong 5 times is locked out for 15 minutes, others are not.
func TestSetupCode(t *testing.T) {
	dir := t.TempDir()
	code, err := setupcode.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != 8 || strings.ContainsAny(code, "01OIL") {
		t.Fatalf("code %q: want 8 unambiguous characters", code)
	}
	if again, _ := setupcode.Load(dir); again != code {
		t.Fatalf("the code changed: %q then %q", code, again)
	}
	if st, err := os.Stat(filepath.Join(dir, setupcode.File)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("code file: %v %v", st, err)
	}
	g := NewGuard(code)
	now := time.Unix(1e9, 0)
	g.now = func() time.Time { return now }
	if err := g.Check("192.168.1.100:5555", strings.ToLower(setupcode.Show(code))); err != nil {
		t.Fatalf("the right code, lower case with its dash: %v", err)
	}
	for i := range 5 {
		if err := g.Check("192.168.1.100:5555", "WRONG-CODE"); !errors.Is(err, ErrWrongCode) {
			t.Fatalf("wrong code %d: %v", i, err)
		}
	}
	if err := g.Check("192.168.1.100:4444", code); !errors.Is(err, ErrLocked) {
		t.Fatalf("the right code from a locked-out address: %v, want ErrLocked", err)
	}
	if err := g.Check("192.168.1.101:1", code); err != nil {
		t.Fatalf("another address: %v", err)
	}
	now = now.Add(15*time.Minute + time.Second)
	if err := g.Check("192.168.1.100:5555", code); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	// Addresses tracked are bounded: once 256 have guessed wrong within the lockout, a new
	// one is refused rather than counted.
	for i := range maxTracked {
		_ = g.Check(fmt.Sprintf("10.0.%d.%d:1", i/250, i%250+1), "nope-nope")
	}
	if len(g.bad) != maxTracked {
		t.Fatalf("tracked %d", len(g.bad))
	}
	if err := g.Check("10.9.9.9:1", "nope"); !errors.Is(err, ErrLocked) {
		t.Fatalf("a newcomer with the table full: %v", err)
	}
	now = now.Add(16 * time.Minute)
	if err := g.Check("10.9.9.9:1", "nope"); !errors.Is(err, ErrWrongCode) || len(g.bad) != 1 {
		t.Fatalf("after the quiet period: %v, %d tracked", err, len(g.bad))
	}
}
