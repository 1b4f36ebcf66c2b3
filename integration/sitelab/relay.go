package sitelab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/lab"
)

// The office's voice relay (issue 22): `appliance relay` (the same binary as the box's
// daemon) in the lab's relay host, its public address lab.Relay4 on the internet segment,
// with one office: the lab's box.

// RelayPort is the relay's WireGuard port in the lab.
const RelayPort = 51830

// Relay is the relay role running in lab.HostRelay for the site's box. The lab makes both
// key pairs, so each side's config names the other's public key before either starts.
type Relay struct {
	BoxKey wgtypes.Key // the box's private key, at STATEDIR/relay/box.key
	Key    wgtypes.Key // the relay's private key, at the relay's state dir relay.key
	Cmd    *exec.Cmd   // the running `appliance relay`
	site   *Site
	dir    string
	bin    string
	args   []string // the relay's command line, for Restart
	sshd   *exec.Cmd
}

// NewRelay makes the key pairs of a relay and its office's box; bin is the appliance (the
// relay is the same binary).
func NewRelay(bin string) (*Relay, error) {
	box, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return nil, fmt.Errorf("sitelab: relay: box key: %w", err)
	}
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return nil, fmt.Errorf("sitelab: relay: relay key: %w", err)
	}
	return &Relay{BoxKey: box, Key: key, bin: bin}, nil
}

// Endpoint is the relay's WireGuard endpoint, as the box's [relay] names it.
func Endpoint() string { return fmt.Sprintf("%s:%d", lab.Relay4, RelayPort) }

// BoxConfig adds the box's [relay] section to an appliance config (from Config): the lab's
// relay, its public key, and duplicate (every tunnel packet over both lines) on or off.
func (r *Relay) BoxConfig(cfg []byte, duplicate bool) []byte {
	return append(append([]byte(nil), cfg...), fmt.Sprintf("\n[relay]\nendpoint = %q\npublic_key = %q\nduplicate = %t\n",
		Endpoint(), r.Key.PublicKey(), duplicate)...)
}

// Toml is the relay's relay.toml for the lab: the public side is eth0 (lab.Relay4), SSH
// from the lab's admin only, and one office, the box, whose SIP and RTP (the lab PBX's
// range) come from the lab's trunk.
func (r *Relay) Toml() string {
	return fmt.Sprintf(`public_interface = "eth0"
listen_port = %d
admin_networks = [%q]
ssh_port = 22

[office.lab]
public_key = %q
tunnel = "10.254.0.0/30"
sip_port = 5060
sip_transports = ["udp", "tcp"]
rtp_ports = "9000-10999"
trunk_networks = [%q]
`, RelayPort, lab.Admin4, r.BoxKey.PublicKey(), lab.Trunk4)
}

// Start is a setup step for sitelab.Start: it writes the box's key where its daemon will
// read it, the relay's key and relay.toml, and starts `appliance relay` in the relay host,
// waiting until its WireGuard port is open.
func (r *Relay) Start(s *Site) error {
	r.site = s
	r.dir = filepath.Join(s.dir, "relay-host")
	if err := writeKey(filepath.Join(s.StateDir(), "relay", "box.key"), r.BoxKey); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(r.dir, "relay.key"), r.Key); err != nil {
		return err
	}
	cfg := filepath.Join(r.dir, "relay.toml")
	if err := os.WriteFile(cfg, []byte(r.Toml()), 0o600); err != nil {
		return fmt.Errorf("sitelab: relay: %w", err)
	}
	r.args = []string{r.bin, "relay", "--config", cfg, "--state", r.dir}
	var err error
	if r.Cmd, err = s.Lab.Start(lab.HostRelay, r.args...); err != nil {
		return err
	}
	return r.waitListening(20 * time.Second)
}

// waitListening waits until a UDP socket is bound to the relay's WireGuard port in the relay
// host, or the relay exits.
func (r *Relay) waitListening(d time.Duration) error {
	exited := make(chan struct{})
	go func(cmd *exec.Cmd) { _ = r.site.Lab.Wait(cmd); close(exited) }(r.Cmd) // ends with the process
	deadline := time.Now().Add(d)
	for {
		out, _ := r.site.Lab.Run(lab.HostRelay, "ss", "-Hnul", fmt.Sprintf("sport = :%d", RelayPort))
		if strings.TrimSpace(out) != "" {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("sitelab: the relay exited; it said:\n%s", r.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sitelab: the relay is not listening on %d within %s; it said:\n%s", RelayPort, d, r.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeKey(path string, k wgtypes.Key) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("sitelab: relay key: %w", err)
	}
	if err := os.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("sitelab: relay key: %w", err)
	}
	return nil
}

// Log is what the relay has written.
func (r *Relay) Log() string {
	if r.Cmd == nil {
		return ""
	}
	return r.site.Lab.Output(r.Cmd)
}

// Restart stops the relay (SIGTERM) and starts it again with the same state.
func (r *Relay) Restart() error {
	if err := r.site.Lab.Stop(r.Cmd); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return err
		}
	}
	var err error
	if r.Cmd, err = r.site.Lab.Start(lab.HostRelay, r.args...); err != nil {
		return err
	}
	return r.waitListening(20 * time.Second)
}

// Unreachable makes the relay's host drop everything to its WireGuard port (from either of
// the box's lines), or stop doing so: a relay that does not answer.
func (r *Relay) Unreachable(on bool) error {
	if !on {
		_, err := r.site.Lab.Run(lab.HostRelay, "nft", "delete", "table", "inet", "relayfault")
		return err
	}
	return r.site.nft(lab.HostRelay, fmt.Sprintf(`table inet relayfault {
	chain pre { type filter hook prerouting priority -300; policy accept; udp dport %d drop; }
}`, RelayPort))
}

// StartSSH runs Debian's OpenSSH server on the relay's public address, port 22, with a
// temporary host key: the service the relay's firewall opens to admin networks only.
func (r *Relay) StartSSH() error {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		return errors.New("sitelab: OpenSSH's server is needed: apt-get install openssh-server")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // its privilege separation directory
		return fmt.Errorf("sitelab: sshd: %w", err)
	}
	hk := filepath.Join(r.dir, "ssh_host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk).CombinedOutput(); err != nil {
		return fmt.Errorf("sitelab: ssh-keygen: %w: %s", err, out)
	}
	conf := filepath.Join(r.dir, "sshd_config")
	text := fmt.Sprintf("Port 22\nListenAddress %s\nHostKey %s\nPidFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n", lab.Relay4, hk)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return fmt.Errorf("sitelab: sshd: %w", err)
	}
	var err error
	if r.sshd, err = r.site.Lab.Start(lab.HostRelay, "/usr/sbin/sshd", "-D", "-e", "-f", conf); err != nil {
		return err
	}
	// Listening once the relay itself connects.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := SSHBanner(r.site.Lab, lab.HostRelay, lab.Relay4+":22", time.Second); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sitelab: sshd in the relay never answered: %s", r.site.Lab.Output(r.sshd))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SSHBanner connects from host to addr and reads the SSH server's greeting, as an ssh client
// would first see it; an error means the port is closed to host (refused or dropped).
func SSHBanner(l *lab.Lab, host, addr string, timeout time.Duration) (string, error) {
	c, err := l.DialTCP(host, addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("sitelab: read SSH greeting from %s: %w", addr, err)
	}
	if !strings.HasPrefix(string(buf[:n]), "SSH-") {
		return "", fmt.Errorf("sitelab: %s greets with %q, not SSH", addr, buf[:n])
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// Reload writes config as the daemon's config file and reloads it (SIGHUP, as
// `systemctl reload` does), waiting until the daemon says it reloaded.
func (s *Site) Reload(config []byte) error {
	if err := os.WriteFile(s.args[3], config, 0o600); err != nil {
		return fmt.Errorf("sitelab: reload: %w", err)
	}
	done, refused := strings.Count(s.Log(), "configuration reloaded"), strings.Count(s.Log(), "reload refused")
	if err := s.Daemon.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("sitelab: reload: %w", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(s.Log(), "configuration reloaded") == done {
		if strings.Count(s.Log(), "reload refused") > refused {
			return fmt.Errorf("sitelab: reload refused:\n%s", tail(s.Log(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sitelab: the daemon did not reload within 20s:\n%s", tail(s.Log(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
