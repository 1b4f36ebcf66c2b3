// Package setupcode keeps the box's one-time setup code (made at the first start in the setup state, shown on the console and the DR sheet) and says where its own update password is.
package setupcode

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/officeedge/appliance/internal/store"
)

// File holds the box's setup code in the state directory (0600), so a restart or a first
// config put back shows the same code.
const File = "setup-code"

// UpdatePasswordFile is the box's own password of gokrazy's update API, which a box made from
// a generic image writes at its first boot (setup.UpdatePassword); scripts/update-box needs it.
const UpdatePasswordFile = "/perm/gokr-pw.txt"

// StoredUpdatePassword is the password in path, or "" (none, or not a password).
func StoredUpdatePassword(path string) string {
	b, _ := store.ReadBounded(path, 128)
	pw := strings.TrimSpace(string(b))
	if pw == "" || strings.ContainsAny(pw, "@:/?# \n\t") {
		return ""
	}
	return pw
}

const (
	// alphabet has no 0/O, 1/I/L: the code is read off a console or a printed sheet.
	alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
	length   = 8
)

// New makes a random code of length characters of alphabet.
func New() (string, error) {
	b := make([]byte, length)
	for i := range b {
		n, err := randIntn(len(alphabet))
		if err != nil {
			return "", fmt.Errorf("setup code: make the setup code: %w", err)
		}
		b[i] = alphabet[n]
	}
	return string(b), nil
}

func randIntn(n int) (int, error) {
	var b [1]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		// Rejection sampling: 256 is not a multiple of n.
		if lim := 256 - 256%n; int(b[0]) < lim {
			return int(b[0]) % n, nil
		}
	}
}

// Valid says whether s is usable as a code given on the boot partition: 6-32 of
// [A-Za-z0-9-].
func Valid(s string) bool {
	if len(s) < 6 || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Load is the box's setup code kept in stateDir, made and kept on the first call.
func Load(stateDir string) (string, error) {
	path := filepath.Join(stateDir, File)
	b, err := os.ReadFile(path)
	if err == nil {
		if c := strings.TrimSpace(string(b)); Valid(c) {
			return c, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("setup code: read the setup code: %w", err)
	}
	c, err := New()
	if err != nil {
		return "", err
	}
	return c, Save(stateDir, c)
}

// Save keeps code as the box's setup code.
func Save(stateDir, code string) error {
	if !Valid(code) {
		return fmt.Errorf("setup code: a setup code is 6 to 32 letters, digits or dashes, not %q", code)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("setup code: keep the setup code: %w", err)
	}
	if err := store.WriteFile(filepath.Join(stateDir, File), []byte(code+"\n"), 0o600); err != nil {
		return fmt.Errorf("setup code: keep the setup code: %w", err)
	}
	return nil
}

// Show is how a code is printed: a made code as XXXX-XXXX, a given one as given.
func Show(code string) string {
	if len(code) == length && !strings.Contains(code, "-") {
		return code[:4] + "-" + code[4:]
	}
	return code
}

// Stored is the code kept in stateDir as Show prints it, or "" when there is none (a box
// that never was in the setup state) or it is not a code.
func Stored(stateDir string) string {
	b, _ := store.ReadBounded(filepath.Join(stateDir, File), 64)
	if c := strings.TrimSpace(string(b)); Valid(c) {
		return Show(c)
	}
	return ""
}
