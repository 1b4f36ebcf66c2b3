package receive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/officeedge/appliance/internal/config"
)

// QuotaError says a PBX's folder on the medium is full: its quota of bytes or of files is
// reached, and the write was refused.
type QuotaError struct {
	PBX string
	Msg string
}

func (e *QuotaError) Error() string { return "PBX " + e.PBX + " is over its quota: " + e.Msg }

// Usage is what is in a PBX's folder on the medium.
type Usage struct {
	Bytes int64
	Files int
}

// FolderUsage counts the regular files in a PBX's folder, transfers under way included
// (they take the space too); links and anything leaving the folder are not followed.
func FolderUsage(dir string) (Usage, error) {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Usage{}, nil
	}
	if err != nil {
		return Usage{}, err
	}
	defer root.Close()
	return rootUsage(root)
}

func rootUsage(root *os.Root) (Usage, error) {
	var u Usage
	err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		u.Bytes += fi.Size()
		u.Files++
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("count the files in %s: %w", root.Name(), err)
	}
	return u, nil
}

// over says what a PBX with usage u would exceed by adding files and bytes, or "".
func over(p config.BackupPBX, u Usage, files int, bytes int64) string {
	switch {
	case u.Files+files > p.QuotaFiles:
		return fmt.Sprintf("%d files (quota_files = %d)", u.Files+files, p.QuotaFiles)
	case u.Bytes+bytes > int64(p.Quota):
		return fmt.Sprintf("%s (quota = %s)", config.Bytes(u.Bytes+bytes), p.Quota)
	}
	return ""
}

// quotas keep the pushing PBXes' usage as their transfers go: counted from the disk
// whenever no transfer of the PBX is open (so deletions and pruning show), and grown by
// each write, so concurrent sessions share one count.
type quotas struct {
	mu  sync.Mutex
	pbx map[string]*folder
}

type folder struct {
	used Usage // at the last count, plus what open transfers wrote and reserved since
	open int
}

// begin reserves a file for a new transfer into dir.
func (q *quotas) begin(p config.BackupPBX, dir string) (*folder, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pbx == nil {
		q.pbx = map[string]*folder{}
	}
	f := q.pbx[p.Name]
	if f == nil || f.open == 0 {
		u, err := FolderUsage(dir)
		if err != nil {
			return nil, err
		}
		f = &folder{used: u}
		q.pbx[p.Name] = f
	}
	if why := over(p, f.used, 1, 0); why != "" {
		return nil, &QuotaError{PBX: p.Name, Msg: why}
	}
	f.used.Files++
	f.open++
	return f, nil
}

// grow reserves n more bytes for an open transfer.
func (q *quotas) grow(p config.BackupPBX, f *folder, n int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if why := over(p, f.used, 0, n); why != "" {
		return &QuotaError{PBX: p.Name, Msg: why}
	}
	f.used.Bytes += n
	return nil
}

// end closes a transfer; one that failed gives back what it reserved.
func (q *quotas) end(f *folder, ok bool, size int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f.open--
	if !ok {
		f.used.Files--
		f.used.Bytes -= size
	}
}
