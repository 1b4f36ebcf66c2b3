package setup

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/setupcode"
	"github.com/officeedge/appliance/internal/store"
)

// UpdatePassword gives a box made from a generic image an update password of its own.
// gokrazy's update API (LAN port 8080) takes its password from the box's /perm/gokr-pw.txt
// before the image's /etc/gokr-pw.txt, and reads it at boot only. A generic image carries
// one password for every box made from it: whoever has the release could push an image of
// their own to any such box from its LAN.
type UpdatePassword struct {
	Image string // the image's password file: /etc/gokr-pw.txt (absent: not a gokrazy image)
	Box   string // the box's own: /perm/gokr-pw.txt
	Port  string // gokrazy's HTTP port file: /etc/http-port.txt
	Log   *slog.Logger
}

// GokrazyUpdatePassword is UpdatePassword at gokrazy's own paths.
func GokrazyUpdatePassword(log *slog.Logger) UpdatePassword {
	return UpdatePassword{Image: "/etc/gokr-pw.txt", Box: setupcode.UpdatePasswordFile, Port: "/etc/http-port.txt", Log: log}
}

// Ensure writes the box's own password when it has none and asks gokrazy to reboot, so its
// update API takes it (once, at the first boot of a generic image). It returns true when a
// reboot was asked for: gokrazy then stops this process. On a system that is not a gokrazy
// image (no image password file) it does nothing.
func (u UpdatePassword) Ensure(ctx context.Context) (bool, error) {
	img, err := readSmall(u.Image)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("setup: update password: %w", err)
	}
	if _, err := os.Stat(u.Box); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("setup: update password: %w", err)
	}
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return false, fmt.Errorf("setup: update password: %w", err)
	}
	// URL-safe, as scripts/update-box puts it in the update URL.
	pw := base64.RawURLEncoding.EncodeToString(b)
	if err := store.WriteFile(u.Box, []byte(pw+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("setup: update password: %w", err)
	}
	port := "8080"
	if p, err := readSmall(u.Port); err == nil && p != "" {
		port = p
	}
	u.Log.Info("setup: the box has an update password of its own now (the DR sheet shows it); rebooting once so gokrazy takes it")
	form := url.Values{"kexec": {"off"}} // a plain reboot: kexec would start the same kernel anyway
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+port+"/reboot", strings.NewReader(form.Encode()))
	if err != nil {
		return false, fmt.Errorf("setup: update password: reboot: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gokrazy", img)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return false, fmt.Errorf("setup: update password: ask gokrazy to reboot: %w (it takes the new password at the next boot)", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("setup: update password: gokrazy refused the reboot: %s (it takes the new password at the next boot)", resp.Status)
	}
	return true, nil
}

// readSmall reads a one-line setting file.
func readSmall(path string) (string, error) {
	b, err := store.ReadBounded(path, 256)
	if errors.Is(err, store.ErrTooBig) {
		err = nil // the first line is what counts
	}
	return strings.TrimSpace(string(b)), err
}
