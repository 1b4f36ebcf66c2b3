package receive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/officeedge/appliance/internal/backup/offsite"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/store"
)

// settle is how long a file on the PBX must be left alone before it is taken as whole.
const settle = time.Minute

// What a PBX's listings may cost: FreePBX keeps a folder per backup job under remote_dir,
// and a few hundred files take a few tens of kB of listing.
const (
	maxDepth    = 4       // folders below remote_dir
	maxEntries  = 5000    // entries listed in all
	listBudget  = 1 << 20 // bytes of listings read from the PBX in one pull (~5000 entries)
	badExamples = 3       // refused names quoted in the log line
)

// Pull fetches the files in p's remote folder the box does not have yet into the PBX's
// folder under dir, each through a hidden temporary file, and returns the paths it wrote.
// Nothing the PBX says is trusted: a name that is not a plain file name is skipped, the
// folder is written through os.Root (no .., no link leads out), its quota bounds what is
// fetched (a *QuotaError stops the pull), and each file is stamped with the time the box
// received it, which retention goes by.
func Pull(ctx context.Context, p config.BackupPBX, dir string, log *slog.Logger) ([]string, error) {
	if !path.IsAbs(p.RemoteDir) {
		return nil, fmt.Errorf("pull %s: remote_dir %q is not an absolute path", p.Name, p.RemoteDir)
	}
	cc, err := offsite.SSHClientConfig(p.User, p.KeyFile, p.HostKey)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.Name, err)
	}
	sc, err := offsite.DialSSH(ctx, (&net.Dialer{}).DialContext, p.Address, cc)
	if err != nil {
		return nil, fmt.Errorf("pull %s: ssh %s: %w", p.Name, p.Address, err)
	}
	defer sc.Close()
	m := &meter{}
	c, err := newClient(sc, m)
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
	root, err := os.OpenRoot(local)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.Name, err)
	}
	defer root.Close()
	files, bad, err := list(ctx, c, m, path.Clean(p.RemoteDir))
	if len(bad) > 0 && log != nil {
		log.Warn(fmt.Sprintf("backup: pull %s: skipped %d entr(ies) whose names are not plain file names, like %s", p.Name, len(bad),
			strings.Join(bad[:min(len(bad), badExamples)], ", ")))
	}
	if err != nil {
		return nil, fmt.Errorf("pull %s: list %s: %w", p.Name, p.RemoteDir, err)
	}
	rec, err := loadPulled(dir, p.Name)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.Name, err)
	}
	use, err := rootUsage(root)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.Name, err)
	}
	rec.forget(files)
	var got []string
	for _, f := range files {
		if r, ok := rec.Files[f.rel]; ok && r.Size == f.size && r.MTime.Equal(f.mtime) {
			continue // pulled before (and maybe pruned since): not a new generation
		}
		have, err := root.Stat(f.rel)
		if _, ok := rec.Files[f.rel]; !ok && err == nil && have.Size() == f.size {
			// Received by a pull cut off before its record was saved, or by an older version
			// that kept the PBX's times: known now, not fetched again.
			rec.Files[f.rel] = pulledFile{Size: f.size, MTime: f.mtime, Received: have.ModTime().UTC()}
			continue
		}
		if time.Since(f.mtime) < settle {
			continue // the PBX may still be writing it: fetched on the next run
		}
		var oldSize int64
		newFiles := 1
		if err == nil {
			oldSize, newFiles = have.Size(), 0
		}
		if why := over(p, use, newFiles, f.size-oldSize); why != "" {
			return got, errors.Join(&QuotaError{PBX: p.Name, Msg: why + ": " + f.rel + " is not fetched"}, rec.save(dir, p.Name))
		}
		room := int64(p.Quota) - use.Bytes + oldSize
		received, n, err := fetch(c, root, path.Join(p.RemoteDir, f.rel), f.rel, room)
		if err != nil {
			var qe *QuotaError
			if errors.As(err, &qe) {
				qe.PBX = p.Name
			}
			return got, errors.Join(fmt.Errorf("pull %s: %w", p.Name, err), rec.save(dir, p.Name))
		}
		use.Files += newFiles
		use.Bytes += n - oldSize // what came, not what the PBX said would
		rec.Files[f.rel] = pulledFile{Size: f.size, MTime: f.mtime, Received: received}
		if err := rec.save(dir, p.Name); err != nil {
			return got, fmt.Errorf("pull %s: %w", p.Name, err)
		}
		got = append(got, filepath.Join(local, filepath.FromSlash(f.rel)))
	}
	if err := rec.save(dir, p.Name); err != nil {
		return got, fmt.Errorf("pull %s: %w", p.Name, err)
	}
	return got, nil
}

// remoteFile is one file the PBX listed, by its path under remote_dir.
type remoteFile struct {
	rel   string
	size  int64
	mtime time.Time // the PBX's: only to know the file again, and whether it settled
}

// plainName says whether a listed entry's name is one file name: no separator, not . or
// .., nothing that leaves the folder it is listed in.
func plainName(n string) bool {
	return n != "." && !strings.ContainsAny(n, "/\x00") && filepath.IsLocal(n)
}

// list walks remote_dir breadth first within the limits; bad are the names refused.
func list(ctx context.Context, c *sftp.Client, m *meter, top string) (files []remoteFile, bad []string, err error) {
	m.arm(listBudget)
	defer m.disarm()
	type dir struct {
		rel   string
		depth int
	}
	queue := []dir{{".", 0}}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		fis, err := c.ReadDirContext(ctx, path.Join(top, d.rel))
		if m.over.Load() {
			return files, bad, fmt.Errorf("the PBX's listings are over %d bytes", listBudget)
		}
		if err != nil {
			return files, bad, err
		}
		for _, fi := range fis {
			name := fi.Name()
			switch {
			case !plainName(name):
				bad = append(bad, fmt.Sprintf("%q", name))
				continue
			case strings.HasPrefix(name, "."):
				continue // hidden, or a transfer under way
			}
			rel := path.Join(d.rel, name)
			switch {
			case fi.IsDir() && d.depth+1 < maxDepth:
				queue = append(queue, dir{rel, d.depth + 1})
			case fi.Mode().IsRegular():
				files = append(files, remoteFile{rel: rel, size: fi.Size(), mtime: fi.ModTime().UTC()})
			}
			if len(files)+len(queue)+len(bad) > maxEntries {
				return files, bad, fmt.Errorf("the PBX lists more than %d entries", maxEntries)
			}
		}
	}
	slices.SortFunc(files, func(a, b remoteFile) int { return strings.Compare(a.rel, b.rel) })
	return files, bad, nil
}

// fetch copies src into rel under root through a hidden temporary file, at most room
// bytes, and stamps it with the time it was received; it returns that time and the size.
func fetch(c *sftp.Client, root *os.Root, src, rel string, room int64) (time.Time, int64, error) {
	in, err := c.Open(src)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("fetch %s: %w", src, err)
	}
	defer in.Close()
	if d := path.Dir(rel); d != "." {
		if err := root.MkdirAll(d, 0o700); err != nil {
			return time.Time{}, 0, fmt.Errorf("fetch %s: %w", src, err)
		}
	}
	tmp := path.Join(path.Dir(rel), tmpPrefix+"pull-"+path.Base(rel))
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("fetch %s: %w", src, err)
	}
	cw := &capWriter{w: out, left: room}
	n, err := in.WriteTo(cw)
	if cw.full {
		err = &QuotaError{Msg: fmt.Sprintf("%s is bigger than the room left (%s)", rel, config.Bytes(room))}
	}
	err = errors.Join(err, out.Sync(), out.Close())
	now := time.Now()
	if err == nil {
		err = errors.Join(root.Chtimes(tmp, now, now), root.Rename(tmp, rel))
	}
	if err != nil {
		_ = root.Remove(tmp)
		return time.Time{}, 0, fmt.Errorf("fetch %s: %w", src, err)
	}
	return now.UTC(), n, nil
}

// capWriter fails a write past its room: the PBX may send more than it said.
type capWriter struct {
	w    io.Writer
	left int64
	full bool
}

func (c *capWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > c.left {
		c.full = true
		return 0, errors.New("over the quota")
	}
	c.left -= int64(len(b))
	return c.w.Write(b)
}

// newClient opens the sftp subsystem with the PBX's replies read through m.
func newClient(sc *ssh.Client, m *meter) (*sftp.Client, error) {
	s, err := sc.NewSession()
	if err != nil {
		return nil, err
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		s.Close()
		return nil, err
	}
	w, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	m.r = r
	c, err := sftp.NewClientPipe(m, w)
	if err != nil {
		s.Close()
	}
	return c, err
}

// meter counts what the PBX sends while armed, and cuts the connection past the budget:
// pkg/sftp keeps a whole listing in memory, and a PBX could list without end.
type meter struct {
	r     io.Reader
	armed atomic.Bool
	left  atomic.Int64
	over  atomic.Bool
}

func (m *meter) arm(budget int64) { m.left.Store(budget); m.armed.Store(true) }
func (m *meter) disarm()          { m.armed.Store(false) }

func (m *meter) Read(b []byte) (int, error) {
	if m.over.Load() {
		return 0, errListTooLong
	}
	n, err := m.r.Read(b)
	if m.armed.Load() && m.left.Add(-int64(n)) < 0 {
		m.over.Store(true)
		return 0, errListTooLong // no bytes with it: io.ReadFull would drop an error that came with a full read
	}
	return n, err
}

var errListTooLong = errors.New("the PBX's listing is too long")

// pulled is what was fetched from a PBX, by its path under remote_dir: kept on the medium
// next to the PBX folders, so that a file pruned from the medium is not fetched again as
// a new generation.
type pulled struct {
	Files map[string]pulledFile `json:"files"`
}

type pulledFile struct {
	Size     int64     `json:"size"`
	MTime    time.Time `json:"mtime"`    // the PBX's, to know the file again
	Received time.Time `json:"received"` // the box's
}

func pulledPath(dir, pbx string) string { return filepath.Join(dir, "pbx", ".pulled-"+pbx+".json") }

func loadPulled(dir, pbx string) (*pulled, error) {
	r := &pulled{Files: map[string]pulledFile{}}
	b, err := os.ReadFile(pulledPath(dir, pbx))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err == nil {
		err = json.Unmarshal(b, r)
	}
	if err != nil {
		return nil, fmt.Errorf("the record of pulled files: %w", err)
	}
	if r.Files == nil {
		r.Files = map[string]pulledFile{}
	}
	return r, nil
}

// forget drops the files the PBX no longer lists (files is a whole listing): the record
// stays as small as the PBX's folder.
func (r *pulled) forget(files []remoteFile) {
	listed := make(map[string]bool, len(files))
	for _, f := range files {
		listed[f.rel] = true
	}
	for rel := range r.Files {
		if !listed[rel] {
			delete(r.Files, rel)
		}
	}
}

// save writes the record crash-safe.
func (r *pulled) save(dir, pbx string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := store.WriteFile(pulledPath(dir, pbx), b, 0o600); err != nil {
		return fmt.Errorf("the record of pulled files: %w", err)
	}
	return nil
}
