package control

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/officeedge/appliance/netcfg"
)

// serve answers the control API on a unix socket in a temporary directory.
func serve(t *testing.T, mux *http.ServeMux) Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return Client{Socket: sock}
}

// The client sends typed requests and reads typed answers; a refusal carries the daemon's
// words and status, and a socket nobody listens on is ErrNotRunning (the CLI works offline then).
func TestClient(t *testing.T) {
	mux := http.NewServeMux()
	var got BlockRequest
	mux.HandleFunc("POST "+PathBlock, func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		_ = json.NewEncoder(w).Encode(netcfg.Entry{Prefix: got.Prefix.Masked()})
	})
	mux.HandleFunc("POST "+PathUnblock, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "198.51.100.9/32 is not blocked", http.StatusConflict)
	})
	c := serve(t, mux)
	// The CLI's requests as the labs write them by hand: a bare address, nanoseconds.
	if err := json.Unmarshal([]byte(`{"prefix":"198.51.100.7","for":3600000000000,"by":"bench"}`), &got); err != nil || got.Prefix.String() != "198.51.100.7/32" || got.For != time.Hour {
		t.Fatalf("a hand-written block request reads as %+v (%v)", got, err)
	}
	e, err := c.Block(BlockRequest{Prefix: got.Prefix, For: time.Hour, Reason: "test", By: "tester"})
	if err != nil || PrefixText(e.Prefix) != "198.51.100.7" || got.By != "tester" || got.Reason != "test" {
		t.Errorf("block: entry %+v, the daemon got %+v, err %v", e, got, err)
	}
	_, err = c.Unblock(UnblockRequest{Prefix: got.Prefix})
	var refused *Error
	if !errors.As(err, &refused) || refused.Status != http.StatusConflict || refused.Message != "198.51.100.9/32 is not blocked" || errors.Is(err, ErrNotRunning) {
		t.Errorf("a refusal reads %#v", err)
	}
	if _, err := (Client{Socket: filepath.Join(t.TempDir(), "none.sock")}).Blocklist(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("no daemon: %v, want ErrNotRunning", err)
	}
}
