package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// TestBackupCLI runs the daemon with backups on: the PBX pushes through the real firewall
// to the LAN address (the uplink gets nothing), `appliance backup now` snapshots the box's
// own config onto the medium, and status, list and dr-sheet say so.
func TestBackupCLI(t *testing.T) {
	labtest.RequireRoot(t, "nft")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	o := &office{Lab: labtest.New(t), t: t, dir: t.TempDir()}
	medium := filepath.Join(o.dir, "medium")
	o.config = filepath.Join(o.dir, "appliance.toml")
	cfg := string(lab.Config) + fmt.Sprintf(`
[backup]
dir = %q

[[backup.pbx]]
name = "threecx"
mode = "push"
authorized_keys = [%q]

[backup.dr]
isp_support = { FTTC = "0800 111 222" }
`, medium, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
	if err := os.WriteFile(o.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	o.start()
	control := filepath.Join(o.dir, "control.sock")

	// The PBX pushes over the LAN; from the uplink side the port is closed.
	var conn net.Conn
	var hostKey ssh.PublicKey // as the PBX first sees it: the status must show the same
	labtest.WaitFor(t, "the backup endpoint on the LAN", 20*time.Second, func() bool {
		c, err := o.DialTCP(lab.HostPBX, net.JoinHostPort(lab.BoxLAN4, "2222"), time.Second)
		conn = c
		return err == nil
	})
	c, chans, reqs, err := ssh.NewClientConn(conn, lab.BoxLAN4, &ssh.ClientConfig{User: "threecx", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { hostKey = k; return nil }, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sftp.NewClient(ssh.NewClient(c, chans, reqs))
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create("3CXBackup.zip")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("the PBX's backup")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sc.Close()
	if b, err := os.ReadFile(filepath.Join(medium, "pbx", "threecx", "3CXBackup.zip")); err != nil || string(b) != "the PBX's backup" {
		t.Fatalf("pushed file on the medium: %q %v", b, err)
	}
	if c, err := o.DialTCP(lab.HostAdmin, net.JoinHostPort(lab.BoxWAN4, "2222"), 2*time.Second); err == nil {
		c.Close()
		t.Error("the backup endpoint is reachable on the uplink")
	}

	out := o.cli("backup", "now", "--control", control)
	if !strings.Contains(out, "backup run started") || !strings.Contains(out, "medium (copy 2): "+medium) {
		t.Errorf("backup now:\n%s", out)
	}
	var snap string
	labtest.WaitFor(t, "the box's snapshot on the medium", 20*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(medium, "box", "box-*.tar.gz"))
		if len(m) > 0 {
			snap = m[0]
		}
		return snap != ""
	})
	if !tarHas(t, snap, strings.TrimPrefix(o.config, "/")) {
		t.Errorf("%s lacks the config", snap)
	}
	if out := o.cli("backup", "status", "--control", control); !strings.Contains(out, "next run") ||
		!strings.Contains(out, "push endpoint: sftp://192.168.50.1:2222") || !strings.Contains(out, ssh.FingerprintSHA256(hostKey)) {
		t.Errorf("backup status:\n%s", out)
	}
	if out := o.cli("backup", "list", "--control", control); !strings.Contains(out, "DESTINATION") {
		t.Errorf("backup list:\n%s", out)
	}
	sheet := o.cli("dr-sheet", "--config", o.config, "--state", filepath.Join(o.dir, "state"))
	for _, want := range []string{"0800 111 222", "2: on the box; Where: " + medium, "appliance wan force backup"} {
		if !strings.Contains(sheet, want) {
			t.Errorf("dr-sheet lacks %q:\n%s", want, sheet)
		}
	}
	if _, _, err := runCLI("", "backup", "restore", "--config", o.config); err == nil || !strings.Contains(err.Error(), "--identity") {
		t.Errorf("restore without an identity: %v", err)
	}
}

func tarHas(t *testing.T, path, name string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			return true
		}
	}
}
