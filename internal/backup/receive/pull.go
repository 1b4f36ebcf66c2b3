package receive

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/pkg/sftp"

	"github.com/officeedge/appliance/internal/backup/offsite"
	"github.com/officeedge/appliance/internal/config"
)

// settle is how long a file on the PBX must be left alone before it is taken as whole.
const settle = time.Minute

// Pull fetches the files in p's remote folder the box does not have yet (by name, size
// and time) into the PBX's folder under dir, each through a hidden temporary file; it
// returns the paths it wrote.
func Pull(ctx context.Context, p config.BackupPBX, dir string) ([]string, error) {
	cc, err := offsite.SSHClientConfig(p.User, p.KeyFile, p.HostKey)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.Name, err)
	}
	sc, err := offsite.DialSSH(ctx, (&net.Dialer{}).DialContext, p.Address, cc)
	if err != nil {
		return nil, fmt.Errorf("pull %s: ssh %s: %w", p.Name, p.Address, err)
	}
	defer sc.Close()
	c, err := sftp.NewClient(sc)
	if err != nil {
		return nil, fmt.Errorf("pull %s: sftp: %w", p.Name, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	local := PBXDir(dir, p.Name)
	if err := os.MkdirAll(local, 0o700); err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.Name, err)
	}
	var got []string
	w := c.Walk(p.RemoteDir)
	for w.Step() {
		if err := w.Err(); err != nil {
			return got, fmt.Errorf("pull %s: list %s: %w", p.Name, p.RemoteDir, err)
		}
		st := w.Stat()
		r := strings.TrimPrefix(strings.TrimPrefix(w.Path(), p.RemoteDir), "/")
		if !st.Mode().IsRegular() || r == "" || hidden(r) || strings.HasPrefix(path.Base(r), ".") {
			continue
		}
		if time.Since(st.ModTime()) < settle {
			continue // the PBX may still be writing it: fetched on the next run
		}
		dst := filepath.Join(local, filepath.FromSlash(r))
		if have, err := os.Stat(dst); err == nil && have.Size() == st.Size() && have.ModTime().Equal(st.ModTime()) {
			continue
		}
		if err := fetch(c, w.Path(), dst, st.ModTime()); err != nil {
			return got, fmt.Errorf("pull %s: %w", p.Name, err)
		}
		got = append(got, dst)
	}
	return got, nil
}

func fetch(c *sftp.Client, src, dst string, mtime time.Time) error {
	in, err := c.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(dst), tmpPrefix+"pull-"+filepath.Base(dst))
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = in.WriteTo(out)
	err = errors.Join(err, out.Sync(), out.Close())
	if err == nil {
		err = errors.Join(os.Chtimes(tmp, mtime, mtime), os.Rename(tmp, dst))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fetch %s: %w", src, err)
	}
	return nil
}
