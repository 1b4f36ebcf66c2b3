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
	Log      *slog.Logger
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
// reload takes effect at once.
func (s *Server) sshConfig() *ssh.ServerConfig {
	find := func(user string) (config.BackupPBX, bool) {
		for _, p := range s.Config().Backup.PBX {
			if p.Mode == "push" && p.Name == user {
				return p, true
			}
		}
		return config.BackupPBX{}, false
	}
	sc := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			p, ok := find(c.User())
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
			p, ok := find(c.User())
			if ok && p.PasswordFile != "" {
				want, err := os.ReadFile(p.PasswordFile)
				if err == nil && len(strings.TrimSpace(string(want))) > 0 &&
					subtle.ConstantTimeCompare([]byte(strings.TrimSpace(string(want))), pw) == 1 {
					return &ssh.Permissions{Extensions: map[string]string{"pbx": p.Name}}, nil
				}
			}
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
	sc := s.sshConfig()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := context.AfterFunc(ctx, func() { conn.Close() })
			defer done()
			s.serveConn(conn, sc)
		}()
	}
}

func (s *Server) serveConn(conn net.Conn, sc *ssh.ServerConfig) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // the login, not the transfer
	sconn, chans, reqs, err := ssh.NewServerConn(conn, sc)
	if err != nil {
		s.Log.Debug("backup endpoint: login refused", "from", conn.RemoteAddr().String(), "err", err)
		return
	}
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
		h := &rootFS{root: root, done: func(name string) {
			if s.Received != nil {
				s.Received(pbx, filepath.Join(dir, name))
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
