package receive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

const rightPassword = "the-right-password-42"

// endpoint runs a push endpoint on loopback for one PBX "pbx" with a password and a key.
type endpoint struct {
	t      *testing.T
	addr   string
	medium string
	key    ssh.Signer
	cfg    *config.Config
	mu     sync.Mutex
	hits   []*QuotaError
	logs   *labtest.LogBuffer
	srv    *Server
}

func newEndpoint(t *testing.T, edit func(*config.Backup)) *endpoint {
	t.Helper()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pbx.pass")
	if err := os.WriteFile(pwFile, []byte(rightPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewSignerFromKey(priv)
	e := &endpoint{t: t, medium: filepath.Join(dir, "medium"), key: key, logs: &labtest.LogBuffer{}}
	e.cfg = &config.Config{Backup: config.Backup{Dir: e.medium, LoginMaxFailures: 3, LoginLockout: time.Hour,
		PBX: []config.BackupPBX{{Name: "pbx", Mode: "push", PasswordFile: pwFile, Quota: config.DefaultQuota, QuotaFiles: config.DefaultQuotaFiles,
			AuthorizedKeys: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key.PublicKey())))}}}}}
	if edit != nil {
		edit(&e.cfg.Backup)
	}
	hk, err := HostKey(filepath.Join(dir, "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	srv := &Server{Config: func() *config.Config { return e.cfg }, HostKey: hk,
		Log: slog.New(slog.NewTextHandler(e.logs, nil)),
		QuotaHit: func(pbx string, err *QuotaError) {
			e.mu.Lock()
			e.hits = append(e.hits, err)
			e.mu.Unlock()
		}}
	e.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return e
}

// login connects from the loopback address from (a source of its own) and logs in.
func (e *endpoint) login(from string, auth ssh.AuthMethod) (*ssh.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp4", e.addr)
	if err != nil {
		return nil, err
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, e.addr, &ssh.ClientConfig{User: "pbx", Auth: []ssh.AuthMethod{auth},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// canLogin says whether the password logs in from, and closes the connection.
func (e *endpoint) canLogin(from, pw string) error {
	c, err := e.login(from, ssh.Password(pw))
	if err == nil {
		c.Close()
	}
	return err
}

// TestEndpointLockout: wrong passwords from one source lock it out, the right password
// and its key included, while another source still gets in; wrong passwords from many
// sources together reach the endpoint's limit, which the PBX that logged in before passes.
func TestEndpointLockout(t *testing.T) {
	oldEvery, oldBurst := globalFailEvery, globalFailBurst
	globalFailEvery, globalFailBurst = time.Hour, 5 // no refill during the test
	t.Cleanup(func() { globalFailEvery, globalFailBurst = oldEvery, oldBurst })
	e := newEndpoint(t, nil)

	if err := e.canLogin("127.0.0.2", rightPassword); err != nil {
		t.Fatalf("the PBX's right password: %v", err)
	}
	for i := range 3 {
		if err := e.canLogin("127.0.0.3", "guess-"+string(rune('a'+i))); err == nil {
			t.Fatal("a wrong password logs in")
		}
	}
	if err := e.canLogin("127.0.0.3", rightPassword); err == nil {
		t.Error("the right password logs in from a source locked out after 3 wrong ones")
	}
	if c, err := e.login("127.0.0.3", ssh.PublicKeys(e.key)); err == nil {
		c.Close()
		t.Error("the right key logs in from a locked-out source")
	}
	if err := e.canLogin("127.0.0.4", rightPassword); err != nil {
		t.Errorf("another source is refused while one is locked out: %v", err)
	}
	// 2 more wrong passwords from other sources (5 in all): the endpoint's limit. A new
	// source is refused even with the right password; the PBX that logged in before is not.
	for _, from := range []string{"127.0.0.5", "127.0.0.6"} {
		if err := e.canLogin(from, "wrong"); err == nil {
			t.Fatal("a wrong password logs in")
		}
	}
	if err := e.canLogin("127.0.0.7", rightPassword); err == nil {
		t.Error("a new source logs in past the endpoint's limit of wrong passwords")
	}
	if err := e.canLogin("127.0.0.2", rightPassword); err != nil {
		t.Errorf("the PBX that logged in before is refused at the endpoint's limit: %v", err)
	}
	c, err := e.login("127.0.0.2", ssh.PublicKeys(e.key))
	if err != nil {
		t.Fatalf("the PBX's key: %v", err)
	}
	c.Close()
	labtest.WaitFor(t, "the lockout logged", 30*time.Second, func() bool {
		return strings.Contains(e.logText(), "127.0.0.3 locked out for 1h0m0s after 3 wrong passwords")
	})
}

func (e *endpoint) logText() string {
	return e.logs.String()
}

// idle opens a TCP connection from and says whether the endpoint greets it (an SSH
// version line) rather than closing it at once.
func (e *endpoint) idle(from string) (net.Conn, bool) {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp4", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4)
	_, err = io.ReadFull(conn, b)
	_ = conn.SetReadDeadline(time.Time{})
	return conn, err == nil && string(b) == "SSH-"
}

// TestEndpointIdleCap: connections that never log in are capped per source and in all,
// and closed after the handshake deadline; then the PBX gets in again.
func TestEndpointIdleCap(t *testing.T) {
	oldTimeout, oldEvery := handshakeTimeout, summaryEvery
	handshakeTimeout, summaryEvery = 3*time.Second, time.Hour // summed up below, by hand
	t.Cleanup(func() { handshakeTimeout, summaryEvery = oldTimeout, oldEvery })
	e := newEndpoint(t, nil)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range maxUnauthPerSource {
		c, ok := e.idle("127.0.1.1")
		if !ok {
			t.Fatalf("idle connection %d from one source refused", i+1)
		}
		held = append(held, c)
	}
	if c, ok := e.idle("127.0.1.1"); ok {
		c.Close()
		t.Fatalf("more than %d idle connections from one source", maxUnauthPerSource)
	}
	for src := 2; len(held) < maxUnauth; src++ {
		c, ok := e.idle("127.0.1." + string(rune('0'+src)))
		if !ok {
			t.Fatalf("idle connection %d refused below the cap", len(held)+1)
		}
		held = append(held, c)
	}
	if c, ok := e.idle("127.0.2.1"); ok {
		c.Close()
		t.Fatalf("more than %d idle connections in all", maxUnauth)
	}
	// The server closes each at the handshake deadline.
	for _, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("an idle connection was not closed by the endpoint: %v", err)
		}
	}
	labtest.WaitFor(t, "the PBX to log in again", 30*time.Second, func() bool { return e.canLogin("127.0.0.2", rightPassword) == nil })
	// Refusals are logged in one line per period, not one per connection.
	e.srv.guard.summarize(summaryEvery)
	if log := e.logText(); strings.Count(log, "refused in the last") != 1 || !strings.Contains(log, "1 over 4 connections logging in at once from one source") ||
		!strings.Contains(log, "1 over 16 connections logging in at once") {
		t.Errorf("the refusals are not summed up in one line:\n%s", log)
	}
}

// TestEndpointPushQuota: a push past the PBX's quota of bytes fails and leaves nothing,
// a file past its quota of files is refused, and each is told once.
func TestEndpointPushQuota(t *testing.T) {
	e := newEndpoint(t, func(b *config.Backup) { b.PBX[0].Quota, b.PBX[0].QuotaFiles = 1_000_000, 3 })
	c, err := e.login("127.0.0.2", ssh.PublicKeys(e.key))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	put := func(name string, size int) error {
		f, err := sc.Create(name)
		if err != nil {
			return err
		}
		_, err = f.ReadFrom(bytes.NewReader(make([]byte, size)))
		return errors.Join(err, f.Close())
	}
	if err := put("/a.zip", 600_000); err != nil {
		t.Fatalf("a push under the quota: %v", err)
	}
	if err := put("/b.zip", 600_000); err == nil || !strings.Contains(err.Error(), "quota") {
		t.Errorf("a push over the quota of bytes: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.medium, "pbx", "pbx", "b.zip")); err == nil {
		t.Error("the push over the quota is on the medium")
	}
	// A sparse giant: one byte written 1 TB into the file.
	if f, err := sc.Create("/sparse.zip"); err == nil {
		if _, err := f.WriteAt([]byte{1}, 1<<40); err == nil {
			t.Error("a write 1 TB into a file is accepted")
		}
		f.Close()
	}
	u, _ := FolderUsage(filepath.Join(e.medium, "pbx", "pbx"))
	if u.Bytes > 1_000_000 || u.Files != 1 {
		t.Errorf("the folder holds %+v after refused pushes", u)
	}
	for _, n := range []string{"/c.zip", "/d.zip"} {
		if err := put(n, 10); err != nil {
			t.Fatalf("a small push within quota_files: %v", err)
		}
	}
	if err := put("/e.zip", 10); err == nil {
		t.Error("a 4th file is accepted with quota_files = 3")
	}
	e.mu.Lock()
	n := len(e.hits)
	e.mu.Unlock()
	if n < 3 {
		t.Errorf("quota refusals told %d times, want one per refused file (3)", n)
	}
}

// TestEndpointCutPush: a push whose connection drops before the file is closed leaves
// nothing on the medium (pkg/sftp closes the file for it at the session's end).
func TestEndpointCutPush(t *testing.T) {
	e := newEndpoint(t, nil)
	c, err := e.login("127.0.0.2", ssh.PublicKeys(e.key))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create("/half.zip")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 100_000)); err != nil {
		t.Fatal(err)
	}
	c.Close() // the PBX loses power
	folder := filepath.Join(e.medium, "pbx", "pbx")
	labtest.WaitFor(t, "the cut transfer to be cleaned up", 30*time.Second, func() bool {
		es, err := os.ReadDir(folder)
		return err == nil && len(es) == 0
	})
	if err := e.canLogin("127.0.0.2", rightPassword); err != nil { // and the endpoint serves on
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(folder, "half.zip")); err == nil {
		t.Error("a transfer cut short is on the medium as a whole file")
	}
}
