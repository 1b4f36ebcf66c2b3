package vpn_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// TestRevokeAndReAdd: alice's phone is removed from the config and the box reloads: her
// key file is gone from the box, the interface has dropped her, and her phone, tunnel still
// up with the real wg-quick config, no longer reaches the PBX. Added again under the same
// name she gets a new key pair: the old config still gets nowhere, the new one does.
func TestRevokeAndReAdd(t *testing.T) {
	s := newSite(t, "")
	l := s.l
	labtest.AcceptAndClose(t, l, lab.HostPBX, lab.PBX4+":5060")
	conf, err := s.client.ClientConfig("alice")
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.device()
	if err != nil || len(d.Peers) != 1 {
		t.Fatalf("box peers %+v %v", d, err)
	}
	oldKey := d.Peers[0].PublicKey
	oldIf := ifName("r")
	s.phoneUp(lab.HostRemote, oldIf, conf)
	labtest.WaitFor(t, "alice to reach the PBX through the tunnel", 10*time.Second, func() bool {
		return reaches(l, lab.HostRemote, lab.PBX4+":5060")
	})

	// Removed: [vpn.peers.alice] gone from the config, then a reload.
	s.writeText(strings.Replace(siteConfig(s.boxIf, ""), fmt.Sprintf("[vpn.peers.alice]\naddress = %q\n", aliceTun), "", 1))
	s.reload()
	labtest.WaitFor(t, "alice gone from the box's interface", 10*time.Second, func() bool {
		d, err := s.device()
		return err == nil && len(d.Peers) == 0
	})
	keyFile := filepath.Join(s.dir, "state", "vpn", "peer-alice.key")
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Errorf("alice's key file is still on the box after her removal: %v", err)
	}
	if reaches(l, lab.HostRemote, lab.PBX4+":5060") || labtest.SIPAnswers(l, lab.HostRemote, aliceTun, lab.PBX4) {
		t.Error("alice's phone still reaches the PBX after her removal")
	}

	// Added again, same name and address: a new key pair.
	s.writeConfig("")
	s.reload()
	labtest.WaitFor(t, "alice back on the box's interface", 10*time.Second, func() bool {
		d, err := s.device()
		return err == nil && len(d.Peers) == 1
	})
	d, _ = s.device()
	if d.Peers[0].PublicKey == oldKey {
		t.Fatalf("alice got her old key back when added again: %s", oldKey)
	}
	if reaches(l, lab.HostRemote, lab.PBX4+":5060") {
		t.Error("alice's old config reaches the PBX again after she was added back")
	}
	newConf, err := s.client.ClientConfig("alice")
	if err != nil || newConf == conf || !strings.Contains(newConf, "PrivateKey = ") {
		t.Fatalf("alice's new config: %v\n%s", err, newConf)
	}
	if _, err := l.Run(lab.HostRemote, "wg-quick", "down", filepath.Join(s.dir, oldIf+".conf")); err != nil {
		t.Fatal(err)
	}
	s.phoneUp(lab.HostRemote, ifName("n"), newConf)
	labtest.WaitFor(t, "alice's new config to reach the PBX", 10*time.Second, func() bool {
		return reaches(l, lab.HostRemote, lab.PBX4+":5060")
	})
}

// writeText writes the site's config file.
func (s *site) writeText(text string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "site.toml"), []byte(text), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// reload tells the box's VPN part to read its config again.
func (s *site) reload() {
	s.t.Helper()
	if err := s.box.Process.Signal(syscall.SIGHUP); err != nil {
		s.t.Fatal(err)
	}
}
