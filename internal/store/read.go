package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrTooBig is ReadBounded's error for a file over its bound.
var ErrTooBig = errors.New("file too big")

// ReadBounded reads a regular file of at most max bytes, following no symbolic link: a file
// another party may have put there (a boot partition's, a small setting) must not lead
// elsewhere, block on a device node or fill the memory. Over max it returns the first max
// bytes with ErrTooBig.
func ReadBounded(path string, max int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a plain file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > max {
		return b[:max], ErrTooBig
	}
	return b, nil
}
