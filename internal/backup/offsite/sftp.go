package offsite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/officeedge/appliance/internal/config"
)

// partSuffix marks an object still being written: renamed away once it is whole.
const partSuffix = ".part"

type sftpStore struct {
	ssh *ssh.Client
	c   *sftp.Client
	dir string
}

func openSFTP(ctx context.Context, d config.BackupDest, dial DialFunc) (Store, error) {
	cc, err := SSHClientConfig(d.User, d.KeyFile, d.HostKey)
	if err != nil {
		return nil, fmt.Errorf("offsite: %s: %w", d.Name, err)
	}
	sc, err := DialSSH(ctx, dial, d.Address, cc)
	if err != nil {
		return nil, fmt.Errorf("offsite: %s: ssh %s: %w", d.Name, d.Address, err)
	}
	c, err := sftp.NewClient(sc, sftp.UseConcurrentWrites(true))
	if err != nil {
		sc.Close()
		return nil, fmt.Errorf("offsite: %s: sftp: %w", d.Name, err)
	}
	dir := d.Dir
	if dir == "" {
		dir = "."
	}
	return &sftpStore{ssh: sc, c: c, dir: dir}, nil
}

// Put writes name.part and renames it to name once it is whole and closed.
func (s *sftpStore) Put(ctx context.Context, name string, r io.Reader) error {
	p := path.Join(s.dir, name)
	if err := s.c.MkdirAll(path.Dir(p)); err != nil {
		return fmt.Errorf("sftp mkdir %s: %w", path.Dir(p), err)
	}
	stop := context.AfterFunc(ctx, func() { s.c.Close() }) // unblock a write when ctx ends
	defer stop()
	f, err := s.c.Create(p + partSuffix)
	if err != nil {
		return fmt.Errorf("sftp create %s: %w", p+partSuffix, err)
	}
	if _, err := f.ReadFrom(r); err != nil {
		f.Close()
		return fmt.Errorf("sftp write %s: %w", p+partSuffix, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sftp write %s: %w", p+partSuffix, err)
	}
	if err := s.c.PosixRename(p+partSuffix, p); err != nil {
		return fmt.Errorf("sftp rename %s: %w", p, err)
	}
	return nil
}

func (s *sftpStore) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	f, err := s.c.Open(path.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("sftp open %s: %w", name, err)
	}
	return f, nil
}

func (s *sftpStore) Delete(ctx context.Context, name string) error {
	if err := s.c.Remove(path.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sftp remove %s: %w", name, err)
	}
	return nil
}

func (s *sftpStore) List(ctx context.Context) ([]Object, error) {
	var out []Object
	w := s.c.Walk(s.dir)
	for w.Step() {
		if w.Err() != nil {
			return nil, fmt.Errorf("sftp list: %w", w.Err())
		}
		if st := w.Stat(); st.Mode().IsRegular() && !strings.HasSuffix(w.Path(), partSuffix) {
			rel := strings.TrimPrefix(strings.TrimPrefix(w.Path(), s.dir), "/")
			out = append(out, Object{Name: rel, Size: st.Size()})
		}
	}
	return out, nil
}

func (s *sftpStore) Close() error { return errors.Join(s.c.Close(), s.ssh.Close()) }
