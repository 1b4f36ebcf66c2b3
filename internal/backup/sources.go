package backup

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// source is a whole file on the medium, ready to be sent.
type source struct {
	Series string
	File   string // relative to the medium
	Path   string
	// Made is when the box received the file: its time on the medium, which only the box
	// sets (pushes and pulls stamp each file as it lands; the PBX's times are never kept).
	Made time.Time
	Size int64
}

// sources lists the whole files on the medium, oldest first: the PBXes' under pbx/NAME and
// the box's own under box. Dot files are transfers still under way.
func sources(dir string) ([]source, error) {
	var out []source
	for _, top := range []string{"pbx", "box"} {
		root := filepath.Join(dir, top)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if strings.HasPrefix(d.Name(), ".") && p != root {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			rel = filepath.ToSlash(rel)
			series := "box"
			if top == "pbx" {
				series = "pbx/" + strings.SplitN(strings.TrimPrefix(rel, "pbx/"), "/", 2)[0]
			}
			out = append(out, source{Series: series, File: rel, Path: p, Made: fi.ModTime().UTC(), Size: fi.Size()})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("backup: list %s: %w", root, err)
		}
	}
	slices.SortFunc(out, func(a, b source) int { return a.Made.Compare(b.Made) })
	return out, nil
}

// objectName is a source's name at a destination: its time makes a file the PBX writes
// again under the same name a new generation rather than an overwrite.
func objectName(s source) string {
	return s.File + "." + s.Made.UTC().Format("20060102T150405Z") + ".age"
}

// snapshot writes the box's own configuration and state (files) as one tar.gz in the
// medium's box folder, through a hidden temporary file.
func snapshot(dir string, files []string, now time.Time) (string, error) {
	boxDir := filepath.Join(dir, "box")
	if err := os.MkdirAll(boxDir, 0o700); err != nil {
		return "", fmt.Errorf("backup: box snapshot: %w", err)
	}
	name := filepath.Join(boxDir, "box-"+now.UTC().Format("20060102T150405Z")+".tar.gz")
	tmp := filepath.Join(boxDir, ".tmp-"+filepath.Base(name))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("backup: box snapshot: %w", err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, p := range files {
		if err = addFile(tw, p); err != nil {
			break
		}
	}
	err = errors.Join(err, tw.Close(), gz.Close(), f.Sync(), f.Close())
	if err == nil {
		err = errors.Join(os.Chtimes(tmp, now, now), os.Rename(tmp, name))
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("backup: box snapshot: %w", err)
	}
	return name, nil
}

// addFile adds one file under its absolute path; a file that is not there (no audit log
// yet) is left out.
func addFile(tw *tar.Writer, p string) error {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return err
	}
	h, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	h.Name = strings.TrimPrefix(p, "/")
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.CopyN(tw, f, fi.Size())
	return err
}
