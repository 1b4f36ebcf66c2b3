package receive

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"github.com/pkg/sftp"
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
	tmp := path.Join(path.Dir(name), fmt.Sprintf("%s%d-%s", tmpPrefix, tmpSeq.Add(1), path.Base(name)))
	f, err := h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &incoming{File: f, h: h, tmp: tmp, name: name}, nil
}

type incoming struct {
	*os.File
	h         *rootFS
	tmp, name string
}

// Close syncs the file and renames it into place.
func (w *incoming) Close() error {
	err := errors.Join(w.File.Sync(), w.File.Close())
	if err == nil {
		err = w.h.root.Rename(w.tmp, w.name)
	}
	if err != nil {
		_ = w.h.root.Remove(w.tmp)
		return err
	}
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
