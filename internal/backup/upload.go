package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"filippo.io/age"
	"golang.org/x/time/rate"

	"github.com/officeedge/appliance/internal/backup/offsite"
)

// counter hashes and counts what passes through it.
type counter struct {
	h hash.Hash
	n int64
}

func newCounter() *counter { return &counter{h: sha256.New()} }

func (c *counter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

func (c *counter) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// limited paces reads to the limiter (nil: no cap).
type limited struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
}

func (l *limited) Read(p []byte) (int, error) {
	if l.lim == nil {
		return l.r.Read(p)
	}
	if b := l.lim.Burst(); len(p) > b {
		p = p[:b]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// sent is what an upload measured on the way.
type sent struct {
	size, cipherSize  int64
	sha256, cipherSHA string
}

// send streams the file at path, encrypted to rcpt, to name at st: the plain file and
// the ciphertext are hashed as they pass, so nothing is held in memory but the buffers.
func send(ctx context.Context, st offsite.Store, name, path string, rcpt age.Recipient, lim *rate.Limiter) (sent, error) {
	f, err := os.Open(path)
	if err != nil {
		return sent{}, err
	}
	defer f.Close()
	plain, cipher := newCounter(), newCounter()
	pr, pw := io.Pipe()
	encDone := make(chan error, 1)
	go func() {
		w, err := age.Encrypt(pw, rcpt)
		if err == nil {
			_, err = io.Copy(w, io.TeeReader(&limited{ctx: ctx, r: f, lim: lim}, plain))
			if err == nil {
				err = w.Close()
			}
		}
		pw.CloseWithError(err)
		encDone <- err
	}()
	err = st.Put(ctx, name, io.TeeReader(pr, cipher))
	pr.CloseWithError(fmt.Errorf("upload ended")) // unblocks the encryptor after a failed Put
	if eerr := <-encDone; err == nil && eerr != nil {
		err = eerr
	}
	if err != nil {
		return sent{}, err
	}
	return sent{size: plain.n, cipherSize: cipher.n, sha256: plain.sum(), cipherSHA: cipher.sum()}, nil
}

// verify reads name back from st and checks it is the ciphertext that was sent.
func verify(ctx context.Context, st offsite.Store, name string, s sent) error {
	rc, err := st.Get(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	c := newCounter()
	if _, err := io.Copy(c, rc); err != nil {
		return fmt.Errorf("read back %s: %w", name, err)
	}
	if c.n != s.cipherSize || c.sum() != s.cipherSHA {
		return fmt.Errorf("read back %s: %d bytes with SHA-256 %s, but %d bytes with %s were sent", name, c.n, c.sum(), s.cipherSize, s.cipherSHA)
	}
	return nil
}

// Restore fetches name from st, decrypts it with ids into w, and checks the plain file's
// SHA-256 against want (when given). It returns the bytes written.
func Restore(ctx context.Context, st offsite.Store, name string, ids []age.Identity, w io.Writer, want string) (int64, error) {
	rc, err := st.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	r, err := age.Decrypt(rc, ids...)
	if err != nil {
		return 0, fmt.Errorf("decrypt %s: %w", name, err)
	}
	c := newCounter()
	n, err := io.Copy(io.MultiWriter(w, c), r)
	if err != nil {
		return n, fmt.Errorf("decrypt %s: %w", name, err)
	}
	if want != "" && c.sum() != want {
		return n, fmt.Errorf("restore %s: SHA-256 %s, but the manifest says %s", name, c.sum(), want)
	}
	return n, nil
}
