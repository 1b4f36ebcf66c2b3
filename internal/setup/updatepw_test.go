package setup

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpdatePasswordOwn: a box from a generic image writes an update password of its own
// and asks gokrazy (here a stand-in for its /reboot handler: gokrazy itself runs only on the
// image, where scripts/vm-setup sees the reboot) to reboot with the image's password; once it
// has one, or off a gokrazy image, nothing happens.
func TestUpdatePasswordOwn(t *testing.T) {
	dir := t.TempDir()
	var asked []url.Values
	gokrazy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); r.Method != http.MethodPost || r.URL.Path != "/reboot" || !ok || u != "gokrazy" || p != "image-pw" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_ = r.ParseForm()
		asked = append(asked, r.PostForm)
	}))
	defer gokrazy.Close()
	port := gokrazy.URL[strings.LastIndex(gokrazy.URL, ":")+1:]
	u := UpdatePassword{Image: filepath.Join(dir, "etc-pw"), Box: filepath.Join(dir, "perm-pw"), Port: filepath.Join(dir, "port"), Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	if r, err := u.Ensure(ctx); r || err != nil {
		t.Fatalf("not a gokrazy image: rebooting %v, %v", r, err)
	}
	for f, v := range map[string]string{u.Image: "image-pw\n", u.Port: port + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := u.Ensure(ctx); !r || err != nil {
		t.Fatalf("first boot: rebooting %v, %v", r, err)
	}
	b, err := os.ReadFile(u.Box)
	own := strings.TrimSpace(string(b))
	if err != nil || len(own) < 20 || own == "image-pw" || strings.ContainsAny(own, "@:/?# ") {
		t.Fatalf("the box's own password %q, %v", own, err)
	}
	if st, _ := os.Stat(u.Box); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if len(asked) != 1 || asked[0].Get("kexec") != "off" {
		t.Errorf("reboots asked: %v", asked)
	}
	if r, err := u.Ensure(ctx); r || err != nil {
		t.Errorf("second boot: rebooting %v, %v", r, err)
	}
	if b2, _ := os.ReadFile(u.Box); string(b2) != string(b) || len(asked) != 1 {
		t.Errorf("the password changed or another reboot was asked")
	}
}
