package backup

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/backup/receive"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// hostileEntry is one entry a hostile PBX lists, with whatever name, size and time it likes.
type hostileEntry struct {
	name  string
	size  int64 // what the listing says
	mtime time.Time
	dir   bool
	body  int64 // what reading it gives (0: size)
}

func (e hostileEntry) Name() string       { return e.name }
func (e hostileEntry) Size() int64        { return e.size }
func (e hostileEntry) ModTime() time.Time { return e.mtime }
func (e hostileEntry) IsDir() bool        { return e.dir }
func (e hostileEntry) Sys() any           { return nil }
func (e hostileEntry) Mode() fs.FileMode {
	if e.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}

// hostilePBX is a compromised PBX's SFTP server (pkg/sftp with a handler of its own): its
// listings are by folder, and each file reads as zeros of its body size.
type hostilePBX struct {
	mu    sync.Mutex
	dirs  map[string][]hostileEntry
	flood int // entries listed in /backups beyond dirs, made as they are read
}

func (h *hostilePBX) set(dirs map[string][]hostileEntry, flood int) {
	h.mu.Lock()
	h.dirs, h.flood = dirs, flood
	h.mu.Unlock()
}

func (h *hostilePBX) find(p string) (hostileEntry, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.dirs[p]; ok {
		return hostileEntry{name: path.Base(p), dir: true, mtime: time.Now().Add(-time.Hour)}, true
	}
	for _, e := range h.dirs[path.Dir(p)] {
		if path.Base(e.name) == path.Base(p) || e.name == path.Base(p) {
			return e, true
		}
	}
	return hostileEntry{}, false
}

func (h *hostilePBX) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	e, ok := h.find(r.Filepath)
	if !ok {
		// a name it listed in a form the client changed ("../evil" is asked as "evil")
		e = hostileEntry{size: 100}
	}
	n := e.body
	if n == 0 {
		n = e.size
	}
	return bytes.NewReader(make([]byte, n)), nil
}

func (h *hostilePBX) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	if r.Method != "List" {
		e, ok := h.find(r.Filepath)
		if !ok {
			return nil, os.ErrNotExist
		}
		return listerAt(func(i int64) (fs.FileInfo, bool) { return e, i == 0 }), nil
	}
	h.mu.Lock()
	es, flood := h.dirs[r.Filepath], h.flood
	h.mu.Unlock()
	if r.Filepath != "/backups" {
		flood = 0
	}
	return listerAt(func(i int64) (fs.FileInfo, bool) {
		switch {
		case i < int64(len(es)):
			return es[i], true
		case i < int64(len(es)+flood):
			return hostileEntry{name: fmt.Sprintf("flood-%09d-%s.tar.gz", i, strings.Repeat("x", 40)), size: 1, mtime: time.Now().Add(-time.Hour)}, true
		}
		return nil, false
	}), nil
}

type listerAt func(i int64) (fs.FileInfo, bool)

func (l listerAt) ListAt(out []fs.FileInfo, off int64) (int, error) {
	for n := range out {
		fi, ok := l(off + int64(n))
		if !ok {
			return n, io.EOF
		}
		out[n] = fi
	}
	return len(out), nil
}

// startHostile serves h on loopback to any key; it returns the PBX's settings for a pull
// with the box's key file.
func startHostile(t *testing.T, h *hostilePBX) config.BackupPBX {
	t.Helper()
	keys := t.TempDir()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(hostPriv)
	_, boxPriv, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := ssh.MarshalPrivateKey(boxPriv, "")
	keyFile := filepath.Join(keys, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	sc.AddHostKey(hostKey)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_, chans, reqs, err := ssh.NewServerConn(conn, sc)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					ch, creqs, err := nc.Accept()
					if err != nil {
						continue
					}
					go func() {
						for req := range creqs {
							_ = req.Reply(req.Type == "subsystem", nil)
							if req.Type == "subsystem" {
								go ssh.DiscardRequests(creqs)
								srv := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: h, FileList: h, FilePut: nil, FileCmd: nil})
								_ = srv.Serve()
								ch.Close()
								return
							}
						}
					}()
				}
			}()
		}
	}()
	return config.BackupPBX{Name: "hostile", Mode: "pull", Address: ln.Addr().String(), User: "root", KeyFile: keyFile,
		HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))), RemoteDir: "/backups",
		Quota: config.DefaultQuota, QuotaFiles: config.DefaultQuotaFiles}
}

// pullService is a backup service that pulls from p into a medium of its own, without
// destinations (the medium applies the retention policy itself).
func pullService(t *testing.T, p config.BackupPBX) (*Service, *config.Config, *alerts.Store, *events.Bus, *bytes.Buffer) {
	base := t.TempDir()
	cfg := &config.Config{Backup: config.Backup{Dir: filepath.Join(base, "medium"), At: "03:00", MaxAge: 26 * time.Hour,
		KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6, RetryMin: time.Minute, RetryMax: time.Hour, PBX: []config.BackupPBX{p}}}
	al, bus := alerts.New(nil), events.New(100)
	var log bytes.Buffer
	s := New(Options{Config: func() *config.Config { return cfg }, StateDir: filepath.Join(base, "state"), Alerts: al, Bus: bus,
		Log: slog.New(slog.NewTextHandler(&log, nil))})
	return s, cfg, al, bus, &log
}

// TestPullHostile: a PBX lists names that leave its folder, and 200 back-dated files (one
// per past day): nothing lands outside the folder, the bad names are logged in one line,
// and the back-dated files prune none of the 200 real generations the policy keeps.
func TestPullHostile(t *testing.T) {
	h := &hostilePBX{}
	p := startHostile(t, h)
	s, cfg, _, _, log := pullService(t, p)
	medium := cfg.Backup.Dir
	folder := receive.PBXDir(medium, "hostile")
	now := time.Now()
	// What the box received over the last 200 days: one generation a day, each stamped when
	// it landed.
	var real []string
	for i := range 200 {
		f := filepath.Join(folder, fmt.Sprintf("real-%03d.tar.gz", i))
		if err := os.MkdirAll(folder, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("a real backup"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The newest an hour ago, but never before today's midnight (UTC, as retention's
		// buckets): the pulled files land now, and a newest generation in yesterday's bucket
		// (or last week's, last month's) would rightly lose its slot to them after midnight.
		first := now.Add(-time.Hour)
		if today := now.UTC().Truncate(24 * time.Hour); first.Before(today) {
			first = today
		}
		at := first.AddDate(0, 0, -i)
		if err := os.Chtimes(f, at, at); err != nil {
			t.Fatal(err)
		}
		real = append(real, f)
	}
	policy := Policy{cfg.Backup.KeepDaily, cfg.Backup.KeepWeekly, cfg.Backup.KeepMonthly}
	keptBefore := keptFiles(t, medium, policy)

	old := now.Add(-2 * time.Hour)
	listing := []hostileEntry{
		{name: "x/..", size: 50, mtime: old}, {name: "../evil", size: 50, mtime: old}, {name: "/etc/abs-evil", size: 50, mtime: old},
		{name: "..", size: 50, mtime: old}, {name: "x", dir: true, mtime: old}, {name: "a/b", size: 50, mtime: old},
	}
	for i := range 200 {
		listing = append(listing, hostileEntry{name: fmt.Sprintf("junk-%03d.tar.gz", i), size: 10, mtime: now.Add(-time.Duration(i+1) * 24 * time.Hour)})
	}
	h.set(map[string][]hostileEntry{"/backups": listing,
		"/backups/x": {{name: "../../pwned", size: 50, mtime: old}, {name: "..", size: 50, mtime: old}, {name: "x/..", size: 50, mtime: old}}}, 0)
	start := time.Now().Add(-time.Second)
	s.collect(context.Background(), cfg)
	if st := s.Status(); !strings.Contains(st.PBX[0].LastPull, "new file(s)") || strings.Contains(st.PBX[0].LastPull, "failed") {
		t.Fatalf("the pull: %s\n%s", st.PBX[0].LastPull, log)
	}

	// Nothing outside the PBX's folder but the record of what was pulled.
	base := filepath.Dir(medium)
	_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(p, folder+"/") && p != filepath.Join(medium, "pbx", ".pulled-hostile.json") {
			t.Errorf("the pull wrote %s, outside the PBX's folder", p)
		}
		return nil
	})
	if n := strings.Count(log.String(), "not plain file names"); n != 1 || !strings.Contains(log.String(), `skipped`) {
		t.Errorf("the refused names are logged in %d lines, want one:\n%s", n, log)
	}
	// The back-dated files are stamped with the time they arrived.
	for i := range 200 {
		fi, err := os.Stat(filepath.Join(folder, fmt.Sprintf("junk-%03d.tar.gz", i)))
		if err != nil {
			t.Fatal(err)
		}
		if fi.ModTime().Before(start) {
			t.Fatalf("junk-%03d.tar.gz keeps the PBX's time %s", i, fi.ModTime())
		}
	}
	// Retention: every real generation the policy kept before is still there.
	s.pruneMedium(cfg)
	var left []string
	for _, f := range real {
		if _, err := os.Stat(f); err == nil {
			left = append(left, f)
		}
	}
	if len(left) != len(keptBefore) || len(left) < 10 {
		t.Errorf("%d real generations left after the pull, the policy kept %d before", len(left), len(keptBefore))
	}
	for _, f := range keptBefore {
		if strings.Contains(f, "real-") {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("%s pruned because of the back-dated files", filepath.Base(f))
			}
		}
	}
	// A file pulled and then pruned from the medium is not fetched again as a new generation.
	if err := os.Remove(filepath.Join(folder, "junk-000.tar.gz")); err != nil {
		t.Fatal(err)
	}
	got, err := receive.Pull(context.Background(), p, medium, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("the second pull fetched %v (%v), want nothing", got, err)
	}
}

// keptFiles are the files on the medium the policy keeps.
func keptFiles(t *testing.T, medium string, p Policy) []string {
	srcs, err := sources(medium)
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{}
	for _, src := range srcs {
		m.Entries = append(m.Entries, Entry{Series: src.Series, File: src.File, Made: src.Made})
	}
	drop := map[int]bool{}
	for _, i := range p.prunable(m) {
		drop[i] = true
	}
	var out []string
	for i, src := range srcs {
		if !drop[i] {
			out = append(out, src.Path)
		}
	}
	return out
}

// TestPullHostileLinks: links in the PBX's folder lead no write out of it.
func TestPullHostileLinks(t *testing.T) {
	h := &hostilePBX{}
	p := startHostile(t, h)
	s, cfg, _, _, _ := pullService(t, p)
	folder := receive.PBXDir(cfg.Backup.Dir, "hostile")
	outside := t.TempDir()
	if err := os.MkdirAll(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(folder, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "target"), filepath.Join(folder, "evil.tar.gz")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	h.set(map[string][]hostileEntry{"/backups": {{name: "evil.tar.gz", size: 50, mtime: old}, {name: "sub", dir: true, mtime: old}},
		"/backups/sub": {{name: "f.tar.gz", size: 50, mtime: old}}}, 0)
	s.collect(context.Background(), cfg)
	if es, _ := os.ReadDir(outside); len(es) != 0 {
		t.Errorf("the pull wrote %v through a link, outside the folder", es)
	}
	if fi, err := os.Lstat(filepath.Join(folder, "evil.tar.gz")); err != nil || !fi.Mode().IsRegular() || fi.Size() != 50 {
		t.Errorf("evil.tar.gz is not the pulled file in place of the link: %v %v", fi, err)
	}
}

// TestPullHostileQuota: a PBX over its quota (in files listed, or in bytes sent beyond what
// it said) stops the pull with an alert; a listing without end is cut off.
func TestPullHostileQuota(t *testing.T) {
	h := &hostilePBX{}
	p := startHostile(t, h)
	p.Quota = 1_000_000
	s, cfg, al, bus, _ := pullService(t, p)
	folder := receive.PBXDir(cfg.Backup.Dir, "hostile")
	old := time.Now().Add(-time.Hour)
	h.set(map[string][]hostileEntry{"/backups": {{name: "a.tar.gz", size: 400_000, mtime: old}, {name: "b.tar.gz", size: 400_000, mtime: old},
		{name: "c.tar.gz", size: 400_000, mtime: old}}}, 0)
	s.collect(context.Background(), cfg)
	alerted := func() bool {
		for _, a := range al.List() {
			if a.Key == "backup.quota.hostile" && a.Active {
				return true
			}
		}
		return false
	}
	if !alerted() {
		t.Fatalf("no quota alert: %+v", al.List())
	}
	if _, err := os.Stat(filepath.Join(folder, "c.tar.gz")); err == nil {
		t.Error("the file over the quota was fetched")
	}
	if u, _ := receive.FolderUsage(folder); u.Files != 2 || u.Bytes > 1_000_000 {
		t.Errorf("the folder holds %+v", u)
	}
	if st := s.Status(); !strings.Contains(st.PBX[0].LastPull, "stopped") || !strings.Contains(st.PBX[0].LastPull, "quota") {
		t.Errorf("the status says %q", st.PBX[0].LastPull)
	} else if st.PBX[0].Usage != "800 kB of 1 MB, 2 of 500 files" {
		t.Errorf("the status shows the usage as %q", st.PBX[0].Usage)
	}
	n := 0
	for _, e := range bus.Recent(100) {
		if e.Kind == "backup.quota" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d backup.quota events, want 1", n)
	}

	// A file that says 10 bytes and sends 2 MB: stopped at the room left, nothing kept.
	if err := os.Remove(filepath.Join(folder, "b.tar.gz")); err != nil {
		t.Fatal(err)
	}
	h.set(map[string][]hostileEntry{"/backups": {{name: "a.tar.gz", size: 400_000, mtime: old}, {name: "liar.tar.gz", size: 10, body: 2 << 20, mtime: old}}}, 0)
	_, err := receive.Pull(context.Background(), p, cfg.Backup.Dir, nil)
	if err == nil || !strings.Contains(err.Error(), "quota") {
		t.Errorf("a file bigger than it said: %v", err)
	}
	if u, _ := receive.FolderUsage(folder); u.Files != 1 || u.Bytes > 1_000_000 {
		t.Errorf("the folder holds %+v after the lying file", u)
	}

	// A listing without end: cut off, nothing fetched.
	h.set(map[string][]hostileEntry{"/backups": nil}, 10_000_000)
	if _, err := receive.Pull(context.Background(), p, cfg.Backup.Dir, nil); err == nil || !strings.Contains(err.Error(), "listing") {
		t.Errorf("an endless listing: %v", err)
	}

	// Room again (the medium pruned): the alert clears.
	if err := os.Remove(filepath.Join(folder, "a.tar.gz")); err != nil {
		t.Fatal(err)
	}
	s.checkQuotas(cfg)
	if alerted() {
		t.Error("the quota alert stays with the folder empty")
	}
}
