package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/officeedge/appliance/internal/backup/offsite"
	"github.com/officeedge/appliance/internal/config"
)

// Restored is one copy decrypted by a restore.
type Restored struct {
	Object string `json:"object"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	// Checked says the SHA-256 matched the manifest's (false: no manifest entry to check by).
	Checked bool `json:"checked"`
}

// RestoreCopies decrypts copies from destination d into dir: the named objects, or else
// the newest copy of each series in the manifest (or, on a new box without one, every
// object there). Each file is written whole or not at all, under the name it had on the
// medium.
func RestoreCopies(ctx context.Context, d config.BackupDest, stateDir string, ids []age.Identity, dir string, objects []string, dial offsite.DialFunc) ([]Restored, error) {
	m, err := LoadManifest(stateDir, d.Name)
	if err != nil {
		return nil, err
	}
	byObject := map[string]Entry{}
	newest := map[string]Entry{}
	for _, e := range m.Present() {
		byObject[e.Object] = e
		if n, ok := newest[e.Series]; !ok || e.Made.After(n.Made) {
			newest[e.Series] = e
		}
	}
	st, err := offsite.Open(ctx, d, dial)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if len(objects) == 0 {
		for _, e := range newest {
			objects = append(objects, e.Object)
		}
		if len(objects) == 0 {
			objs, err := st.List(ctx)
			if err != nil {
				return nil, err
			}
			for _, o := range objs {
				objects = append(objects, o.Name)
			}
		}
	}
	var out []Restored
	for _, name := range objects {
		e, known := byObject[name]
		as := strings.TrimSuffix(name, ".age") // the generation's name, on a new box
		if known {
			as = e.File // the name it had on the medium
		}
		r, err := restoreOne(ctx, st, name, as, e.SHA256, ids, dir)
		if err != nil {
			return out, err
		}
		r.Checked = known
		out = append(out, r)
	}
	return out, nil
}

func restoreOne(ctx context.Context, st offsite.Store, name, as, want string, ids []age.Identity, dir string) (Restored, error) {
	rel := filepath.FromSlash(as)
	if !filepath.IsLocal(rel) {
		return Restored{}, fmt.Errorf("restore: %q is not a name inside the folder", name)
	}
	dst := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(dst), ".restoring-"+filepath.Base(dst))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	n, err := Restore(ctx, st, name, ids, f, want)
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return Restored{}, fmt.Errorf("restore %s: %w", name, err)
	}
	return Restored{Object: name, Path: dst, Size: n}, nil
}
