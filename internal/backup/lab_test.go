package backup_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/backup/offsite"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
)

// Where the lab's servers listen.
const (
	pushPort = "2222"
	pbxSSH   = lab.PBX4 + ":2201"    // the FreePBX-like PBX's OpenSSH
	netSFTP  = lab.Remote4 + ":2202" // the off-site SFTP server, on the internet
	netS3    = lab.Remote4 + ":7070" // the off-site S3 server (versitygw)
	s3Access = "officeedge"
	s3Secret = "secret-key-of-the-bucket"
)

// world is a lab with a FreePBX-like PBX running OpenSSH, and an internet host running
// OpenSSH SFTP and versitygw.
type world struct {
	t        *testing.T
	l        *lab.Lab
	dir      string // everything the test writes
	keys     string // the box's key material (what is on the box)
	admin    string // the admin's identities (never on the box)
	boxKey   string
	pbxHost  ssh.PublicKey
	netHost  ssh.PublicKey
	pushKey  ssh.Signer // the 3CX-like PBX's key for the push endpoint
	pushPriv ed25519.PrivateKey
	ids      map[string]*age.X25519Identity
	s3root   string
	vgw      *exec.Cmd
	pbxDir   string // the FreePBX-like PBX's backup folder
}

func newWorld(t *testing.T) *world {
	t.Helper()
	l, err := lab.New(lab.Unique(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.ConfigureBox(); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, l: l, dir: t.TempDir(), ids: map[string]*age.X25519Identity{}}
	w.keys, w.admin = w.mkdir("box-keys"), w.mkdir("admin")
	w.boxKey = filepath.Join(w.keys, "id_ed25519")
	boxSigner := writeKey(t, w.boxKey)
	w.pushPriv, w.pushKey = newKey(t)
	for _, name := range []string{"s3", "sftp"} {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		w.ids[name] = id
		if err := os.WriteFile(filepath.Join(w.admin, name+".key"), []byte(id.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	auth := filepath.Join(w.dir, "authorized_keys")
	if err := os.WriteFile(auth, ssh.MarshalAuthorizedKey(boxSigner.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	w.pbxDir = w.mkdir("freepbx-backups")
	w.pbxHost = w.sshd(lab.HostPBX, pbxSSH, auth)
	w.netHost = w.sshd(lab.HostRemote, netSFTP, auth)
	w.s3root = w.mkdir("s3")
	w.startS3()
	return w
}

func (w *world) mkdir(name string) string {
	p := filepath.Join(w.dir, name)
	if err := os.MkdirAll(p, 0o700); err != nil {
		w.t.Fatal(err)
	}
	return p
}

func newKey(t *testing.T) (ed25519.PrivateKey, ssh.Signer) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, s
}

// writeKey makes an OpenSSH private key file.
func writeKey(t *testing.T, path string) ssh.Signer {
	priv, s := newKey(t)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// sshd starts Debian's OpenSSH server in host, on addr, with a temporary host key.
func (w *world) sshd(host, addr, authorized string) ssh.PublicKey {
	t := w.t
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Fatal("OpenSSH's server is needed: apt-get install openssh-server (scripts/apt-packages.txt)")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // its privilege separation directory
		t.Fatal(err)
	}
	hk := filepath.Join(w.dir, host+"_host_key")
	s := writeKey(t, hk)
	ip, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(w.dir, host+"_sshd_config")
	text := fmt.Sprintf(`Port %s
ListenAddress %s
HostKey %s
PidFile none
AuthorizedKeysFile %s
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
`, port, ip, hk, authorized)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, err := w.l.Start(host, "/usr/sbin/sshd", "-D", "-e", "-f", conf)
	if err != nil {
		t.Fatal(err)
	}
	w.waitPort(lab.HostBox, addr, cmd)
	return s.PublicKey()
}

// waitPort waits until addr accepts connections from host.
func (w *world) waitPort(host, addr string, cmd *exec.Cmd) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := w.l.DialTCP(host, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s never listened: %v\n%s", addr, err, w.l.Output(cmd))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// versitygw is built from the nested tools module once, into bin/tools.
var (
	vgwOnce sync.Once
	vgwPath string
	vgwErr  error
)

func versitygw(t *testing.T) string {
	vgwOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			vgwErr = err
			return
		}
		repo := filepath.Dir(strings.TrimSpace(string(out)))
		vgwPath = filepath.Join(repo, "bin", "tools", "versitygw-v1.8.0")
		if _, err := os.Stat(vgwPath); err == nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", vgwPath, "github.com/versity/versitygw/cmd/versitygw")
		cmd.Dir = filepath.Join(repo, "internal", "backup", "tools")
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			vgwErr = fmt.Errorf("build versitygw: %w\n%s", err, out)
		}
	})
	if vgwErr != nil {
		t.Fatal(vgwErr)
	}
	return vgwPath
}

func (w *world) startS3() {
	cmd, err := w.l.Start(lab.HostRemote, versitygw(w.t), "--access", s3Access, "--secret", s3Secret, "--port", netS3, "--quiet", "posix", w.s3root)
	if err != nil {
		w.t.Fatal(err)
	}
	w.vgw = cmd
	w.waitPort(lab.HostBox, netS3, cmd)
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// site writes a config for the box with both PBXes and both destinations.
func (w *world) site(name, extra string) (cfgPath, medium, state string) {
	t := w.t
	base := w.mkdir(name)
	medium, state = filepath.Join(base, "medium"), filepath.Join(base, "state")
	secret := filepath.Join(w.keys, "s3.secret")
	if err := os.WriteFile(secret, []byte(s3Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := string(lab.Config) + fmt.Sprintf(`
[backup]
dir = %q
port = %s
retry_min = "1s"
retry_max = "2s"
%s

[[backup.pbx]]
name = "threecx"
mode = "push"
authorized_keys = [%q]

[[backup.pbx]]
name = "freepbx"
mode = "pull"
address = %q
user = "root"
key_file = %q
host_key = %q
remote_dir = %q

[[backup.destination]]
name = "s3"
kind = "s3"
recipient = %q
endpoint = %q
bucket = %q
access_key = %q
secret_key_file = %q
insecure_http = true

[[backup.destination]]
name = "sftp"
kind = "sftp"
recipient = %q
address = %q
user = "root"
key_file = %q
host_key = %q
dir = %q
`, medium, pushPort, extra, authorized(w.pushKey.PublicKey()), pbxSSH, w.boxKey, authorized(w.pbxHost), w.pbxDir,
		w.ids["s3"].Recipient(), netS3, name, s3Access, secret,
		w.ids["sftp"].Recipient(), netSFTP, w.boxKey, authorized(w.netHost), filepath.Join(w.dir, "offsite-sftp", name))
	cfgPath = filepath.Join(base, "appliance.toml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(cfgPath); err != nil {
		t.Fatal(err)
	}
	return cfgPath, medium, state
}

// startRunner runs the backup service in the box's namespace, as its own process.
func (w *world) startRunner(cfgPath, state string) *exec.Cmd {
	cmd, err := w.l.Start(lab.HostBox, "env", "BACKUP_RUNNER_CONFIG="+cfgPath, "BACKUP_RUNNER_STATE="+state, os.Args[0], "-test.run=^$")
	if err != nil {
		w.t.Fatal(err)
	}
	return cmd
}

// waitFor polls cond until it holds, or fails after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, output func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", what, output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verified is the manifest entry for file at dest, if there is one.
func verified(t *testing.T, state, dest, file string) (backup.Entry, bool) {
	m, err := backup.LoadManifest(state, dest)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Present() {
		if e.File == file {
			return e, true
		}
	}
	return backup.Entry{}, false
}

// dest opens a destination from the box's namespace.
func (w *world) dest(cfgPath, name string) offsite.Store {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, d := range cfg.Backup.Destinations {
		if d.Name == name {
			st, err := offsite.Open(context.Background(), d, w.dial)
			if err != nil {
				w.t.Fatal(err)
			}
			return st
		}
	}
	w.t.Fatalf("no destination %s", name)
	return nil
}

func (w *world) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return w.l.DialTCP(lab.HostBox, addr, 10*time.Second)
}

// readBack decrypts an object with the admin's identity.
func (w *world) readBack(st offsite.Store, dest, object string) []byte {
	var b bytes.Buffer
	if _, err := backup.Restore(context.Background(), st, object, []age.Identity{w.ids[dest]}, &b, ""); err != nil {
		w.t.Fatalf("%s: %v", dest, err)
	}
	return b.Bytes()
}

func randomFile(t *testing.T, path string, size int64) []byte {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// pushClient logs in to the box's endpoint from the PBX, as 3CX does.
func (w *world) pushClient(user string, signer ssh.Signer) (*ssh.Client, error) {
	conn, err := w.l.DialTCP(lab.HostPBX, net.JoinHostPort(lab.BoxLAN4, pushPort), 5*time.Second)
	if err != nil {
		return nil, err
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, lab.BoxLAN4, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// TestBackupLab: a 3CX-like PBX pushes, the box pulls from a FreePBX-like one, and both
// go encrypted to real S3 and SFTP servers on the internet, read back and decrypted by
// the admin's identities, which nothing on the box can stand in for.
func TestBackupLab(t *testing.T) {
	w := newWorld(t)
	cfgPath, medium, state := w.site("office", `at = "03:00"`)
	pulled := randomFile(t, filepath.Join(w.pbxDir, "20261201-0100.tar.gz"), 1<<20+17)
	// The PBX wrote it an hour ago; one it is writing now is left for the next run.
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(w.pbxDir, "20261201-0100.tar.gz"), hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	randomFile(t, filepath.Join(w.pbxDir, "20261202-0100.tar.gz"), 1000)
	runner := w.startRunner(cfgPath, state)
	out := func() string { return w.l.Output(runner) }
	w.waitPort(lab.HostPBX, net.JoinHostPort(lab.BoxLAN4, pushPort), runner)

	// The endpoint is on the LAN address only: not on an uplink.
	if c, err := w.l.DialTCP(lab.HostFTTC, net.JoinHostPort(lab.BoxWAN4, pushPort), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("the backup endpoint answers on the primary uplink's address")
	}

	// 3CX pushes its backup.
	c, err := w.pushClient("threecx", w.pushKey)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	pushed := make([]byte, 3<<20+5)
	_, _ = rand.Read(pushed)
	f, err := sc.Create("/3CXBackup-20261201.zip")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(pushed)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Confined to its folder: nothing else on the box can be read, listed or linked to.
	for _, p := range []string{"/../../../etc/passwd", "../state", "/etc/hostname"} {
		if _, err := sc.Stat(p); err == nil {
			t.Errorf("the PBX's account can stat %s", p)
		}
	}
	if err := sc.Symlink("/etc", "/etc-link"); err == nil {
		t.Error("the PBX's account may make a symlink")
	}
	fis, err := sc.ReadDir("/")
	if err != nil || len(fis) != 1 || fis[0].Name() != "3CXBackup-20261201.zip" {
		t.Errorf("the PBX's folder lists %v (%v), want only its backup", fis, err)
	}
	sess, err := c.NewSession()
	if err == nil {
		if err := sess.Run("id"); err == nil {
			t.Error("the PBX's account may run a command")
		}
		sess.Close()
	}
	sc.Close()
	c.Close()
	if _, err := w.pushClient("threecx", mustSigner(t)); err == nil {
		t.Error("an unknown key logs in to the endpoint")
	}
	if b, err := os.ReadFile(filepath.Join(medium, "pbx", "threecx", "3CXBackup-20261201.zip")); err != nil || !bytes.Equal(b, pushed) {
		t.Fatalf("the pushed backup is not on the medium whole: %v", err)
	}
	// OpenSSH's sftp client pushes too (batch mode, as a cron job on a PBX would).
	keyFile := filepath.Join(w.dir, "push_key")
	blk, err := ssh.MarshalPrivateKey(w.pushPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	viaOpenSSH := randomFile(t, filepath.Join(w.dir, "openssh-push", "3CXBackup-20261201-b.zip"), 200<<10)
	batch := filepath.Join(w.dir, "batch")
	if err := os.WriteFile(batch, []byte("put "+filepath.Join(w.dir, "openssh-push", "3CXBackup-20261201-b.zip")+"\nls\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := w.l.Run(lab.HostPBX, "sftp", "-b", batch, "-i", keyFile, "-P", pushPort, "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "threecx@"+lab.BoxLAN4); err != nil {
		t.Fatalf("OpenSSH sftp push: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(medium, "pbx", "threecx", "3CXBackup-20261201-b.zip")); err != nil || !bytes.Equal(b, viaOpenSSH) {
		t.Fatalf("the backup pushed with OpenSSH is not on the medium whole: %v", err)
	}

	// Run now (as `appliance backup now`): pull, snapshot, send, verify.
	if err := runner.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"pbx/threecx/3CXBackup-20261201.zip": pushed, "pbx/threecx/3CXBackup-20261201-b.zip": viaOpenSSH,
		"pbx/freepbx/20261201-0100.tar.gz": pulled}
	for _, dest := range []string{"s3", "sftp"} {
		waitFor(t, 90*time.Second, "verified copies at "+dest, func() bool {
			for file := range want {
				if _, ok := verified(t, state, dest, file); !ok {
					return false
				}
			}
			m, _ := backup.LoadManifest(state, dest)
			return slices.ContainsFunc(m.Present(), func(e backup.Entry) bool { return e.Series == "box" })
		}, out)
	}
	w.l.Stop(runner)
	if _, err := os.Stat(filepath.Join(medium, "pbx", "freepbx", "20261202-0100.tar.gz")); err == nil {
		t.Error("a file the PBX was still writing was pulled")
	}
	if !slices.ContainsFunc(runnerEvents(out()), func(e events.Event) bool { return e.Kind == "backup.ok" }) {
		t.Errorf("no backup.ok event:\n%s", out())
	}

	// Read back from each destination and decrypt with the admin's identity.
	stores := map[string]offsite.Store{"s3": w.dest(cfgPath, "s3"), "sftp": w.dest(cfgPath, "sftp")}
	for dest, st := range stores {
		defer st.Close()
		for file, body := range want {
			e, _ := verified(t, state, dest, file)
			if got := w.readBack(st, dest, e.Object); !bytes.Equal(got, body) {
				t.Errorf("%s: %s decrypts to %d bytes, not the %d of the original", dest, e.Object, len(got), len(body))
			}
		}
	}
	// Each destination has its own key: the sftp identity cannot open the bucket's copies.
	e, _ := verified(t, state, "s3", "pbx/threecx/3CXBackup-20261201.zip")
	if _, err := backup.Restore(context.Background(), stores["s3"], e.Object, []age.Identity{w.ids["sftp"]}, io.Discard, ""); err == nil {
		t.Error("the sftp destination's identity decrypts the bucket's copy")
	}

	// Nothing on the box (its state, its medium, its keys and config) decrypts the bucket's
	// objects: no file there is an age identity (the recipients are X25519 keys, which no
	// SSH key on the box can stand in for), and any other key fails to decrypt.
	var boxIDs []age.Identity
	for _, root := range []string{state, medium, w.keys, filepath.Dir(cfgPath)} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			b, _ := os.ReadFile(p)
			if ids, err := age.ParseIdentities(bytes.NewReader(b)); err == nil {
				boxIDs = append(boxIDs, ids...)
			}
			return nil
		})
	}
	if len(boxIDs) != 0 {
		t.Errorf("the box holds %d age identities: it must hold recipients only", len(boxIDs))
	}
	// The identities the box could have: none of the destinations' (it never gets them),
	// so a fresh one stands for any key an attacker finds there.
	stray, _ := age.GenerateX25519Identity()
	boxIDs = append(boxIDs, stray)
	objs, err := stores["s3"].List(context.Background())
	if err != nil || len(objs) < 3 {
		t.Fatalf("bucket lists %v (%v)", objs, err)
	}
	for _, o := range objs {
		_, err := backup.Restore(context.Background(), stores["s3"], o.Name, boxIDs, io.Discard, "")
		var nm *age.NoIdentityMatchError
		if !errors.As(err, &nm) {
			t.Errorf("%s with the box's %d keys: %v, want no identity matched", o.Name, len(boxIDs), err)
		}
	}

	// The restore drill: the newest copy of each series, checked against the manifest.
	cfg, _ := config.Load(cfgPath)
	to := w.mkdir("restored")
	ids, err := age.ParseIdentities(strings.NewReader(w.ids["sftp"].String()))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := backup.RestoreCopies(context.Background(), cfg.Backup.Destinations[1], state, ids, to, nil, w.dial)
	if err != nil || len(rs) != 3 { // the newest of each series: threecx, freepbx, box
		t.Fatalf("restore: %v %v", rs, err)
	}
	for _, r := range rs {
		if !r.Checked {
			t.Errorf("restore of %s not checked against the manifest", r.Object)
		}
	}
	for _, file := range []string{"pbx/threecx/3CXBackup-20261201-b.zip", "pbx/freepbx/20261201-0100.tar.gz"} {
		if b, err := os.ReadFile(filepath.Join(to, file)); err != nil || !bytes.Equal(b, want[file]) {
			t.Errorf("restored %s differs (%v)", file, err)
		}
	}
}

func mustSigner(t *testing.T) ssh.Signer { _, s := newKey(t); return s }

// TestBackupResume kills the runner mid-upload and cuts the S3 server mid-upload: nothing
// half-written is ever listed as verified, the stale alert fires while the copy cannot be
// made, and the upload completes after the restarts.
func TestBackupResume(t *testing.T) {
	w := newWorld(t)
	// 5 MB/s: a 24 MiB file takes seconds, long enough to be cut.
	cfgPath, medium, state := w.site("resume", `at = "03:00"
rate_kbit = 40000
max_age = "25s"`)
	big := randomFile(t, filepath.Join(medium, "pbx", "threecx", "big.zip"), 24<<20+3)
	const file = "pbx/threecx/big.zip"
	bucket := filepath.Join(w.s3root, "resume")
	uploading := func() bool { // versitygw keeps a multipart upload's parts under the bucket
		n := 0
		_ = filepath.WalkDir(bucket, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.Contains(p, ".sgwtmp") {
				if fi, err := d.Info(); err == nil && fi.Size() > 0 {
					n++
				}
			}
			return nil
		})
		return n > 0
	}
	runner := w.startRunner(cfgPath, state)
	waitFor(t, 60*time.Second, "the upload to start", uploading, func() string { return w.l.Output(runner) })
	// The power cut: no chance to tidy up.
	if err := runner.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.l.Wait(runner)
	if _, ok := verified(t, state, "s3", file); ok {
		t.Fatal("a copy cut short is listed as verified")
	}
	st := w.dest(cfgPath, "s3")
	if objs, _ := st.List(context.Background()); slices.ContainsFunc(objs, func(o offsite.Object) bool { return strings.HasPrefix(o.Name, file) }) {
		t.Fatalf("the bucket shows a half-written object: %v", objs)
	}
	st.Close()

	// Restarted: the pending work is taken up at once; cut the S3 server mid-upload.
	runner = w.startRunner(cfgPath, state)
	out := func() string { return w.l.Output(runner) }
	waitFor(t, 60*time.Second, "the upload to start again", uploading, out)
	w.l.Stop(w.vgw)
	has := func(kind string) func() bool {
		return func() bool {
			return slices.ContainsFunc(runnerEvents(out()), func(e events.Event) bool { return e.Kind == kind && e.Fields["destination"] == "s3" })
		}
	}
	waitFor(t, 60*time.Second, "backup.failed for s3", has("backup.failed"), out)
	if _, ok := verified(t, state, "s3", file); ok {
		t.Fatal("a copy cut short is listed as verified")
	}
	waitFor(t, 60*time.Second, "backup.stale for s3", has("backup.stale"), out)

	// The server is back: the retry completes the copy, and it is the file.
	w.startS3()
	waitFor(t, 120*time.Second, "a verified copy at s3", func() bool { _, ok := verified(t, state, "s3", file); return ok }, out)
	waitFor(t, 120*time.Second, "a verified copy at sftp", func() bool { _, ok := verified(t, state, "sftp", file); return ok }, out)
	w.l.Stop(runner)
	for _, dest := range []string{"s3", "sftp"} {
		st := w.dest(cfgPath, dest)
		e, _ := verified(t, state, dest, file)
		if got := w.readBack(st, dest, e.Object); !bytes.Equal(got, big) {
			t.Errorf("%s: the resumed copy decrypts to %d bytes, not the original's %d", dest, len(got), len(big))
		}
		// Every listed copy is whole at the destination.
		m, _ := backup.LoadManifest(state, dest)
		for _, e := range m.Present() {
			rc, err := st.Get(context.Background(), e.Object)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, rc)
			rc.Close()
			if n != e.CipherSize {
				t.Errorf("%s: %s is %d bytes at the destination, the manifest says %d", dest, e.Object, n, e.CipherSize)
			}
		}
		st.Close()
	}
}
