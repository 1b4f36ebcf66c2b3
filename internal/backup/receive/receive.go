// Package receive takes the PBXes' backups onto the box's medium: an SFTP endpoint they push to, confined to each PBX's folder, and pulls over SFTP.
package receive

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/store"
)

// Server is the push endpoint: one SFTP account per pushing PBX, each seeing only its own
// folder on the backup medium; no shell, no commands, no port forwarding.
type Server struct {
	Config  func() *config.Config
	HostKey ssh.Signer
	// Received is told of each whole file written (after its rename into place).
	Received func(pbx, path string)
	// QuotaHit is told of each push refused because the PBX's folder is full.
	QuotaHit func(pbx string, err *QuotaError)
	Log      *slog.Logger

	once  sync.Once
	guard *guard
	quota quotas
}

// init makes the state shared by all the listeners (one per LAN address).
func (s *Server) init() {
	s.once.Do(func() {
		s.guard = newGuard(func() (int, time.Duration) {
			b := s.Config().Backup
			return b.LoginMaxFailures, b.LoginLockout
		}, s.Log)
	})
}

// find is the pushing PBX user logs in as, in the current config.
func (s *Server) find(user string) (config.BackupPBX, bool) {
	for _, p := range s.Config().Backup.PBX {
		if p.Mode == "push" && p.Name == user {
			return p, true
		}
	}
	return config.BackupPBX{}, false
}

// PBXDir is where a PBX's backups are on the medium.
func PBXDir(dir, pbx string) string { return filepath.Join(dir, "pbx", pbx) }

// HostKey loads the endpoint's SSH host key from path, making it on first use.
func HostKey(path string) (ssh.Signer, error) {
	if b, err := os.ReadFile(path); err == nil {
		return ssh.ParsePrivateKey(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("receive: host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "backup endpoint")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("receive: host key: %w", err)
	}
	if err := store.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, fmt.Errorf("receive: host key: %w", err)
	}
	return ssh.NewSignerFromKey(priv)
}

// sshConfig logs in the pushing PBXes by their keys or passwords, read at each login so a
// reload takes effect at once. Passwords go through the guard: a source's wrong ones lock
// it out, and all sources' together are rate-limited. Keys cannot be guessed: a key the
// box does not know is not counted (a PBX may offer several before its own).
func (s *Server) sshConfig() *ssh.ServerConfig {
	sc := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			src := sourceOf(c.RemoteAddr())
			if s.guard.locked(src) > 0 {
				return nil, errors.New("locked out after wrong passwords")
			}
			p, ok := s.find(c.User())
			if ok {
				for _, line := range p.AuthorizedKeys {
					k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
					if err == nil && subtle.ConstantTimeCompare(k.Marshal(), key.Marshal()) == 1 {
						return &ssh.Permissions{Extensions: map[string]string{"pbx": p.Name}}, nil
					}
				}
			}
			return nil, errors.New("unknown key")
		},
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			src := sourceOf(c.RemoteAddr())
			if err := s.guard.startPassword(src); err != nil {
				return nil, err
			}
			p, ok := s.find(c.User())
			if ok && p.PasswordFile != "" {
				want, err := os.ReadFile(p.PasswordFile)
				if err == nil && len(strings.TrimSpace(string(want))) > 0 &&
					subtle.ConstantTimeCompare([]byte(strings.TrimSpace(string(want))), pw) == 1 {
					s.guard.passwordDone(src, true)
					return &ssh.Permissions{Extensions: map[string]string{"pbx": p.Name}}, nil
				}
			}
			s.guard.passwordDone(src, false)
			time.Sleep(time.Second) // slows password guessing
			return nil, errors.New("wrong password")
		},
		MaxAuthTries: 3,
	}
	sc.AddHostKey(s.HostKey)
	return sc
}

// Serve accepts PBX connections on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	s.init()
	sc := s.sshConfig()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { // what was refused, in one line per period
		defer wg.Done()
		t := time.NewTicker(summaryEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.guard.summarize(summaryEvery)
				return
			case <-t.C:
				s.guard.summarize(summaryEvery)
			}
		}
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive: accept: %w", err)
		}
		src := sourceOf(conn.RemoteAddr())
		if !s.guard.admit(src) {
			conn.Close() // before any handshake: refusing costs nothing
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := context.AfterFunc(ctx, func() { conn.Close() })
			defer done()
			authed := s.serveConn(conn, sc, src)
			s.guard.closed(src, authed)
		}()
	}
}

// summaryEvery is how often refusals are logged, summed up.
var summaryEvery = 30 * time.Second

// serveConn serves one admitted connection; it says whether it logged in.
func (s *Server) serveConn(conn net.Conn, sc *ssh.ServerConfig, src netip.Prefix) bool {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout)) // the login, not the transfer
	sconn, chans, reqs, err := ssh.NewServerConn(conn, sc)
	if err != nil {
		s.Log.Debug("backup endpoint: login refused", "from", conn.RemoteAddr().String(), "err", err)
		return false
	}
	s.guard.loggedIn(src)
	_ = conn.SetDeadline(time.Time{})
	defer sconn.Close()
	go ssh.DiscardRequests(reqs) // no port forwarding, no keepalive replies needed
	pbx := sconn.Permissions.Extensions["pbx"]
	dir := PBXDir(s.Config().Backup.Dir, pbx)

	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.Prohibited, "only SFTP")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.session(ch, creqs, pbx, dir)
	}
	return true
}

// session serves the sftp subsystem and refuses shells and commands.
func (s *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request, pbx, dir string) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "subsystem" || len(req.Payload) < 4 || string(req.Payload[4:]) != "sftp" {
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			s.Log.Error("backup endpoint", "pbx", pbx, "err", err)
			return
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			s.Log.Error("backup endpoint", "pbx", pbx, "err", err)
			return
		}
		defer root.Close()
		h := &rootFS{root: root, dir: dir, q: &s.quota, done: func(name string) {
			if s.Received != nil {
				s.Received(pbx, filepath.Join(dir, name))
			}
		}, pbx: func() (config.BackupPBX, bool) { return s.find(pbx) }, hit: func(err *QuotaError) {
			if s.QuotaHit != nil {
				s.QuotaHit(pbx, err)
			}
		}}
		srv := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
		if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
			s.Log.Debug("backup endpoint: session ended", "pbx", pbx, "err", err)
		}
		_ = srv.Close()
		return
	}
}
