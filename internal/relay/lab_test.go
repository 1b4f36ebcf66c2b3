package relay_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/relay"
)

// The relay binary in the lab's relay host: its public side lets only the admin reach SSH,
// drops SIP from outside the trunk networks, and blocks a SIPVicious scanner in its kernel.
// (Calls through it, box and relay together, are integration/relaylab's.)
func TestRelayPublicSide(t *testing.T) {
	l := labtest.New(t, "nft", "svcrack", "timeout")
	dir := t.TempDir()
	bin, err := build.Daemon(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "relay.toml")
	if err := os.WriteFile(cfg, []byte(`public_interface = "eth0"
admin_networks = ["`+lab.Admin4+`/32"]

[office.lab]
public_key = "`+boxKey(t)+`"
tunnel = "10.254.0.0/30"
rtp_ports = "9000-10999"
trunk_networks = ["`+lab.Trunk4+`/32"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	cmd, err := l.Start(lab.HostRelay, bin, "relay", "--config", cfg, "--state", state)
	if err != nil {
		t.Fatal(err)
	}
	cl := control.Client{Socket: filepath.Join(state, "control.sock"), Timeout: 5 * time.Second}
	status := func() relay.Status {
		t.Helper()
		var st relay.Status
		if err := cl.GetJSON(relay.StatusPath, &st); err != nil {
			t.Fatalf("relay status: %v; the relay said:\n%s", err, l.Output(cmd))
		}
		return st
	}
	labtest.WaitFor(t, "the relay's status socket", 20*time.Second, func() bool {
		return cl.GetJSON(relay.StatusPath, new(relay.Status)) == nil
	})
	if st := status(); len(st.Offices) != 1 || st.Offices[0].Box != "10.254.0.2" || st.PublicAddress != lab.Relay4 {
		t.Fatalf("status: %+v", st)
	}

	// SSH: the admin's network only.
	labtest.AcceptAndClose(t, l, lab.HostRelay, lab.Relay4+":22")
	c, err := l.DialTCP(lab.HostAdmin, lab.Relay4+":22", 5*time.Second)
	if err != nil {
		t.Fatalf("the admin cannot reach the relay's SSH: %v", err)
	}
	c.Close()
	if c, err := l.DialTCP(lab.HostAttacker, lab.Relay4+":22", 2*time.Second); err == nil {
		c.Close()
		t.Fatal("the attacker reaches the relay's SSH")
	}

	// SIP from outside the trunk networks is turned away, the trunk's goes on to the box.
	options := "OPTIONS sip:lab@" + lab.Relay4 + " SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK1\r\nFrom: <sip:probe@%s>;tag=1\r\n" +
		"To: <sip:lab@" + lab.Relay4 + ">\r\nCall-ID: relaytest1\r\nCSeq: 1 OPTIONS\r\nUser-Agent: relay-test\r\nContent-Length: 0\r\n\r\n"
	for _, h := range []struct{ host, addr string }{{lab.HostAttacker, lab.Attacker4}, {lab.HostTrunk, lab.Trunk4}} {
		u, err := l.DialUDP(h.host, "", lab.Relay4+":5060")
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.ReplaceAll(options, "%s", h.addr)
		for range 3 {
			if _, err := u.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		u.Close()
	}
	droppedFrom := func(st relay.Status) []string {
		var out []string
		for _, d := range st.Dropped {
			for _, s := range d.Sources {
				out = append(out, s.Key)
			}
		}
		return out
	}
	labtest.WaitFor(t, "the attacker's SIP among what the relay turned away", 10*time.Second, func() bool {
		return slices.Contains(droppedFrom(status()), lab.Attacker4)
	})
	if slices.Contains(droppedFrom(status()), lab.Trunk4) {
		t.Errorf("the trunk's SIP was turned away: %v", droppedFrom(status()))
	}

	// A password cracker is blocked in the relay's kernel at its first packets.
	out, _ := l.Command(lab.HostAttacker, "timeout", "-s", "KILL", "5", "svcrack", "-b", lab.Attacker4, "-x", lab.Attacker4,
		"-u", "100", "-r", "1000-1200", lab.Relay4).CombinedOutput()
	labtest.WaitFor(t, "the attacker in the relay's block4 set", 10*time.Second, func() bool {
		set, _ := l.Run(lab.HostRelay, "nft", "list", "set", "inet", "appliance", "block4")
		return strings.Contains(set, lab.Attacker4)
	})
	st := status()
	if !slices.ContainsFunc(st.Blocks, func(b relay.Block) bool { return b.Prefix.Addr().String() == lab.Attacker4 }) {
		t.Errorf("the relay's status does not list the block (svcrack said %s): %+v", out, st.Blocks)
	}
	show, err := l.Run(lab.HostRelay, bin, "relay", "show", "--state", state)
	if err != nil || !strings.Contains(show, "office lab: SIP 5060, RTP 9000-10999 -> box 10.254.0.2") || !strings.Contains(show, lab.Attacker4) {
		t.Errorf("appliance relay show: %v\n%s", err, show)
	}
	if err := l.Stop(cmd); err != nil {
		t.Logf("relay stop: %v", err)
	}
	if set, _ := l.Run(lab.HostRelay, "nft", "list", "set", "inet", "appliance", "block4"); !strings.Contains(set, lab.Attacker4) {
		t.Error("the block is gone when the relay stops: the host must fail closed")
	}
	if strings.Contains(l.Output(cmd), "level=ERROR") {
		t.Errorf("the relay logged errors:\n%s", l.Output(cmd))
	}
}

func boxKey(t *testing.T) string {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().String()
}
