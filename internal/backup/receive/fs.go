package receive

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"

	"github.com/officeedge/appliance/internal/config"
)

// tmpPrefix marks a file still being received: the medium's readers skip such names, so a
// transfer cut short is never taken for a backup.
const tmpPrefix = ".incoming-"

var tmpSeq atomic.Uint64

// rootFS serves one PBX's folder through os.Root, which refuses every path (.., symlinks)
// that would leave it: the kernel-level confinement pkg/sftp does not offer itself.
type rootFS struct {
	root *os.Root
	done func(name string)
	// dir is the folder's path, pbx the PBX's current settings (its quota), q the count
	// shared by its sessions, and hit is told of each write refused over the quota.
	dir string
	pbx func() (config.BackupPBX, bool)
	q   *quotas
	hit func(*QuotaError)
}

// rel turns an SFTP path (absolute, cleaned by pkg/sftp) into one inside the root.
func rel(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

func (h *rootFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	name := rel(r.Filepath)
	if hidden(name) {
		return nil, os.ErrNotExist
	}
	return h.root.Open(name)
}

// Filewrite writes to a hidden temporary file, renamed into place when the client closes it.
func (h *rootFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	name := rel(r.Filepath)
	if hidden(name) || name == "." {
		return nil, os.ErrPermission
	}
	p, ok := h.pbx()
	if !ok {
		return nil, os.ErrPermission // removed from the config while logged in
	}
	fo, err := h.q.begin(p, h.dir)
	if err != nil {
		h.refused(err)
		return nil, err
	}
	tmp := path.Join(path.Dir(name), fmt.Sprintf("%s%d-%s", tmpPrefix, tmpSeq.Add(1), path.Base(name)))
	f, err := h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		h.q.end(fo, false, 0)
		return nil, err
	}
	return &incoming{File: f, h: h, pbx: p, fo: fo, tmp: tmp, name: name}, nil
}

func (h *rootFS) refused(err error) {
	if qe, ok := err.(*QuotaError); ok && h.hit != nil {
		h.hit(qe)
	}
}

// incoming is a file being pushed: each write past its end is reserved from the quota
// first, so a PBX can neither fill the medium nor make a sparse giant.
type incoming struct {
	*os.File
	h         *rootFS
	pbx       config.BackupPBX
	fo        *folder
	tmp, name string

	mu     sync.Mutex
	size   int64 // the furthest end written, reserved from the quota
	failed bool
}

func (w *incoming) WriteAt(b []byte, off int64) (int, error) {
	end := off + int64(len(b))
	if off < 0 || end < off {
		return 0, os.ErrInvalid
	}
	w.mu.Lock()
	if end > w.size {
		if err := w.h.q.grow(w.pbx, w.fo, end-w.size); err != nil {
			first := !w.failed
			w.failed = true
			w.mu.Unlock()
			if first {
				w.h.refused(err)
			}
			return 0, err
		}
		w.size = end
	}
	w.mu.Unlock()
	return w.File.WriteAt(b, off)
}

// TransferError is pkg/sftp telling that the session ended with the file still open (a
// dropped connection): the file is not whole, so Close must not put it in place.
func (w *incoming) TransferError(error) {
	w.mu.Lock()
	w.failed = true
	w.mu.Unlock()
}

// Close syncs the file, stamps it with the time it was received (retention orders
// generations by it; the PBX's own times are ignored) and renames it into place.
func (w *incoming) Close() error {
	err := errors.Join(w.File.Sync(), w.File.Close())
	w.mu.Lock()
	if w.failed {
		err = errors.Join(err, errors.New("the transfer was cut short or a write refused"))
	}
	size := w.size
	w.mu.Unlock()
	if err == nil {
		now := time.Now()
		err = errors.Join(w.h.root.Chtimes(w.tmp, now, now), w.h.root.Rename(w.tmp, w.name))
	}
	if err != nil {
		_ = w.h.root.Remove(w.tmp)
		w.h.q.end(w.fo, false, size)
		return err
	}
	w.h.q.end(w.fo, true, size)
	w.h.done(w.name)
	return nil
}

func (h *rootFS) Filecmd(r *sftp.Request) error {
	name := rel(r.Filepath)
	if hidden(name) {
		return os.ErrPermission
	}
	switch r.Method {
	case "Setstat":
		return nil // times and modes are the box's to keep
	case "Rename", "PosixRename":
		to := rel(r.Target)
		if hidden(to) {
			return os.ErrPermission
		}
		return h.root.Rename(name, to)
	case "Remove", "Rmdir":
		return h.root.Remove(name)
	case "Mkdir":
		return h.root.Mkdir(name, 0o700)
	}
	return sftp.ErrSSHFxOpUnsupported // links could point out of the folder
}

type lister []fs.FileInfo

func (l lister) ListAt(out []fs.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

func (h *rootFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	name := rel(r.Filepath)
	if hidden(name) {
		return nil, os.ErrNotExist
	}
	switch r.Method {
	case "List":
		d, err := h.root.Open(name)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		es, err := d.ReadDir(-1)
		if err != nil {
			return nil, err
		}
		var out lister
		for _, e := range es {
			if hidden(e.Name()) {
				continue
			}
			if fi, err := e.Info(); err == nil {
				out = append(out, fi)
			}
		}
		return out, nil
	case "Stat":
		fi, err := h.root.Stat(name)
		if err != nil {
			return nil, err
		}
		return lister{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// hidden says whether a path names a file still being received.
func hidden(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, tmpPrefix) {
			return true
		}
	}
	return false
}
