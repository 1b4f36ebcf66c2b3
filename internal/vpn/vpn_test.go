package vpn_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/vpn"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// envBox makes the test binary the box's VPN part (see TestMain): the whole process runs in
// the box's namespace, as the daemon does on a box, so that the user-space device's sockets
// and TUN device are there.
const envBox = "VPNTEST_BOX"

func TestMain(m *testing.M) {
	if dir := os.Getenv(envBox); dir != "" {
		os.Exit(runBox(dir))
	}
	os.Exit(m.Run())
}

// runBox runs vpn.Service for dir/site.toml with state in dir/state until SIGTERM; SIGHUP
// reloads the file.
func runBox(dir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	path := filepath.Join(dir, "site.toml")
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("config", "err", err)
		return 1
	}
	s, err := vpn.New(vpn.Options{Config: cfg, StateDir: filepath.Join(dir, "state"), Log: log})
	if err != nil {
		log.Error("vpn", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if c, err := config.Load(path); err != nil {
				log.Error("reload", "err", err)
			} else if err := s.Reload(c); err != nil {
				log.Error("reload", "err", err)
			}
		}
	}()
	if err := s.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

// Tunnel addresses of the test site.
const (
	boxTun   = "10.99.0.1"
	aliceTun = "10.99.0.2"
	bobTun   = "10.99.0.3"
	roamed   = "192.0.2.21" // the remote phone's public address after it moves
)

// site is the lab with the box's firewall and VPN part, the PBX, and the remote phone.
type site struct {
	t      testing.TB
	l      *lab.Lab
	dir    string
	cfg    *config.Config
	boxIf  string
	box    *exec.Cmd
	client *vpn.Service // reads the same state as the box's part: the configs the page serves
	owner  *netcfg.Owner
	fw     *netcfg.Firewall // reads the kernel's blocklist
}

var applyMu sync.Mutex // google/nftables allocates set IDs from an unguarded global

// ifName is an interface name unique to this process: the user-space devices' UAPI
// sockets (/var/run/wireguard/NAME.sock) are shared by every namespace.
func ifName(role string) string { return fmt.Sprintf("w%s%d", role, os.Getpid()%1000000) }

func siteConfig(boxIf, extra string) string {
	return string(lab.Config) + fmt.Sprintf(`
[vpn]
enabled = true
interface = %q
address = "%s/24"
endpoint = %q
keepalive = "5s"

[vpn.peers.alice]
address = %q
%s`, boxIf, boxTun, lab.BoxWAN4, aliceTun, extra)
}

// newSite builds the site; extra goes at the end of alice's [vpn.peers.alice] table.
func newSite(t testing.TB, extra string) *site {
	t.Helper()
	l := labtest.New(t, "nft", "kamailio", "sipp", "wg", "wg-quick", "timeout")
	if err := l.ConfigureBox(); err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, l: l, dir: t.TempDir(), boxIf: ifName("b")}
	s.writeConfig(extra)
	nsh, err := netns.GetFromName(l.NS(lab.HostBox))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	w, err := netcfg.NewOwner(netcfg.OwnerOptions{Firewall: netcfg.New(int(nsh))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	s.owner, s.fw = w, netcfg.New(int(nsh))
	applyMu.Lock()
	err = w.SetConfig(s.cfg)
	applyMu.Unlock()
	if err != nil {
		t.Fatalf("owner: apply the config: %v", err)
	}
	s.box, err = l.Start(lab.HostBox, "env", envBox+"="+s.dir, os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Stop(s.box) })
	labtest.WaitFor(t, "the box's WireGuard interface", 10*time.Second, func() bool {
		d, err := s.device()
		return err == nil && len(d.Peers) == 1
	})
	s.client, err = vpn.New(vpn.Options{Config: s.cfg, StateDir: filepath.Join(s.dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *site) writeConfig(extra string) {
	s.t.Helper()
	text := siteConfig(s.boxIf, extra)
	cfg, err := config.Parse("site.toml", []byte(text))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "site.toml"), []byte(text), 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.cfg = cfg
}

// device is the box's interface as wgctrl reads it (through the user-space UAPI socket).
func (s *site) device() (*wgtypes.Device, error) {
	wc, err := wgctrl.New()
	if err != nil {
		return nil, err
	}
	defer wc.Close()
	return wc.Device(s.boxIf)
}

// wireguardGo builds the user-space WireGuard the phones run, once, into bin/tools.
var (
	wgOnce sync.Once
	wgPath string
	wgErr  error
)

func wireguardGo(t testing.TB) string {
	wgOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			wgErr = err
			return
		}
		repo := filepath.Dir(strings.TrimSpace(string(out)))
		wgPath = filepath.Join(repo, "bin", "tools", "wireguard-go-v0.0.0-20250521234502")
		if _, err := os.Stat(wgPath); err == nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", wgPath, "golang.zx2c4.com/wireguard")
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			wgErr = fmt.Errorf("build wireguard-go: %w\n%s", err, out)
		}
	})
	if wgErr != nil {
		t.Fatal(wgErr)
	}
	return wgPath
}

// phoneUp brings WireGuard up on host with wg-quick from the config file text, as a user
// does with the file the page offers (wireguard-go, since this kernel has no WireGuard).
func (s *site) phoneUp(host, iface, text string) {
	s.t.Helper()
	path := filepath.Join(s.dir, iface+".conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		s.t.Fatal(err)
	}
	cmd := s.l.Command(host, "wg-quick", "up", path)
	cmd.Env = append(os.Environ(), "WG_QUICK_USERSPACE_IMPLEMENTATION="+wireguardGo(s.t))
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("wg-quick up on %s: %v\n%s", host, err, out)
	}
	s.t.Cleanup(func() { _, _ = s.l.Run(host, "wg-quick", "down", path) })
}

func scenario(name string) string {
	p, _ := filepath.Abs(filepath.Join("testdata", "sipp", name))
	return p
}

// sipp runs sipp on host in the foreground, bounded in time.
func (s *site) sipp(host string, secs int, args ...string) (string, error) {
	full := append([]string{"timeout", "-s", "KILL", strconv.Itoa(secs), "sipp", "-nostdin", "-timeout", strconv.Itoa(secs-2) + "s"}, args...)
	out, err := s.l.Command(host, full...).CombinedOutput()
	return string(out), err
}

// reaches says whether a TCP connection from host to addr is accepted. A refused or
// unanswered one is not (the firewall drops silently; its bound is how long a dropped SYN
// is waited for).
func reaches(l *lab.Lab, host, addr string) bool {
	c, err := l.DialTCP(host, addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// echoes says whether a UDP datagram from host to addr comes back from an echo server.
func echoes(l *lab.Lab, host, addr string) bool {
	c, err := l.DialUDP(host, "", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_, _ = c.Write([]byte("ping"))
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 16)
	n, err := c.Read(b)
	return err == nil && string(b[:n]) == "ping"
}

func echoUDP(t testing.TB, l *lab.Lab, host, addr string) {
	c, err := l.ListenUDP(host, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(b)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDP(b[:n], from)
		}
	}()
}

// TestRemotePhone: a remote phone brings WireGuard up from the config the box made,
// registers with the PBX through the tunnel and makes a call; it moves to another public
// address mid-registration and keeps registering; it reaches the PBX's SIP but neither an
// office PC nor the box's SSH; a host without a key the box knows reaches nothing.
func TestRemotePhone(t *testing.T) {
	s := newSite(t, "")
	l := s.l
	labtest.Kamailio(t, s.l, map[string]string{"1001": "pw1001"})

	// The config file and QR code the page offers for alice.
	conf, err := s.client.ClientConfig("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(conf, "PrivateKey = ") || !strings.Contains(conf, "Endpoint = "+lab.BoxWAN4+":51820") {
		t.Fatalf("alice's config is not complete:\n%s", conf)
	}
	if png, err := s.client.QR("alice", 256); err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Fatalf("QR code: %v", err)
	}
	phoneIf := ifName("p")
	s.phoneUp(lab.HostRemote, phoneIf, conf)

	// Registration and a call, through the tunnel to the PBX's LAN address.
	out, err := s.sipp(lab.HostRemote, 20, "-sf", scenario("register.xml"), "-i", aliceTun, "-p", "5060",
		"-s", "1001", "-au", "1001", "-ap", "pw1001", "-m", "1", lab.PBX4+":5060")
	if err != nil || !regexp.MustCompile(`200 <-+\s+1 `).MatchString(out) {
		t.Fatalf("register through the tunnel: %v\n%s\nbox: %s", err, out, l.Output(s.box))
	}
	uas, err := l.Start(lab.HostTrunk, "sipp", "-sn", "uas", "-i", lab.Trunk4, "-p", "5060", "-m", "1", "-nostdin", "-timeout", "30s")
	if err != nil {
		t.Fatal(err)
	}
	out, err = s.sipp(lab.HostRemote, 25, "-sf", scenario("call.xml"), "-i", aliceTun, "-p", "5064", "-s", "+442071234567",
		"-set", "ext", "1001", "-au", "1001", "-ap", "pw1001", "-m", "1", lab.PBX4+":5060")
	if err != nil {
		t.Errorf("call through the tunnel failed: %v\n%s", err, out)
	}
	if err := l.Wait(uas); err != nil {
		t.Errorf("the trunk did not get the call: %v\n%s", err, l.Output(uas))
	}
	if d, err := s.device(); err != nil || len(d.Peers) != 1 || d.Peers[0].LastHandshakeTime.IsZero() || d.Peers[0].ReceiveBytes == 0 {
		t.Errorf("the box shows no handshake or traffic for alice: %+v %v", d, err)
	}

	t.Run("roaming", func(t *testing.T) {
		// Re-registering every 2 s; after the first, the phone's public address changes.
		reg, err := l.Start(lab.HostRemote, "timeout", "-s", "KILL", "40", "sipp", "-nostdin", "-timeout", "38s",
			"-sf", scenario("register.xml"), "-i", aliceTun, "-p", "5062", "-s", "1001", "-au", "1001", "-ap", "pw1001",
			"-m", "6", "-r", "1", "-rp", "2000", "-trace_stat", "-fd", "1", "-stf", filepath.Join(s.dir, "roam.csv"), lab.PBX4+":5060")
		if err != nil {
			t.Fatal(err)
		}
		labtest.WaitFor(t, "the first re-REGISTER", 10*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(s.dir, "roam.csv"))
			return successful(string(b)) >= 1
		})
		for _, c := range [][]string{
			{"ip", "addr", "del", lab.Remote4 + "/24", "dev", "eth0"},
			{"ip", "addr", "add", roamed + "/24", "dev", "eth0"},
			{"ip", "route", "replace", "default", "via", lab.NetGW4},
		} {
			if _, err := l.Run(lab.HostRemote, c...); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Wait(reg); err != nil {
			t.Fatalf("re-REGISTERs after the move failed: %v\n%s", err, l.Output(reg))
		}
		b, _ := os.ReadFile(filepath.Join(s.dir, "roam.csv"))
		if n := successful(string(b)); n != 6 {
			t.Errorf("%d of 6 REGISTERs succeeded across the move:\n%s", n, l.Output(reg))
		}
		d, err := s.device()
		if err != nil || len(d.Peers) != 1 || d.Peers[0].Endpoint == nil || d.Peers[0].Endpoint.IP.String() != roamed {
			t.Errorf("the box did not follow alice to %s: %+v %v", roamed, d, err)
		}
	})

	t.Run("reach", func(t *testing.T) {
		labtest.AcceptAndClose(t, l, lab.HostPhone, "0.0.0.0:8080") // an office PC's service
		echoUDP(t, l, lab.HostPhone, "0.0.0.0:7")
		labtest.AcceptAndClose(t, l, lab.HostBox, "0.0.0.0:22") // the box's SSH
		// The listeners are there: the LAN reaches them.
		if !reaches(l, lab.HostPBX, lab.Phone4+":8080") || !echoes(l, lab.HostPBX, lab.Phone4+":7") || !reaches(l, lab.HostPhone, lab.BoxLAN4+":22") {
			t.Fatal("the test's listeners do not answer on the LAN")
		}
		if !reaches(l, lab.HostRemote, lab.PBX4+":5060") || !labtest.SIPAnswers(l, lab.HostRemote, aliceTun, lab.PBX4) {
			t.Error("alice cannot reach the PBX's SIP port through the tunnel")
		}
		for _, a := range []string{lab.Phone4 + ":8080", boxTun + ":22", lab.BoxLAN4 + ":22"} {
			if reaches(l, lab.HostRemote, a) {
				t.Errorf("alice reaches %s through the tunnel", a)
			}
		}
		if echoes(l, lab.HostRemote, lab.Phone4+":7") {
			t.Errorf("alice reaches the office PC's UDP echo through the tunnel")
		}
	})

	t.Run("sipguard alerts, never blocks", func(t *testing.T) {
		bus := events.New(100)
		seen, unsub := bus.Subscribe(100)
		defer unsub()
		g, err := sipguard.New(sipguard.Options{Thresholds: sipguard.ThresholdsFrom(s.cfg),
			Blocker: s.owner, Bus: bus, StateDir: filepath.Join(s.dir, "sipguard"), BlockTimes: s.cfg.SIPGuard.BlockTimes,
			Site: s.cfg.Site, Alerts: alerts.New(time.Now)})
		if err != nil {
			t.Fatal(err)
		}
		var cp *sipguard.Capturer
		if err := l.Do(lab.HostBox, func() (err error) { cp, err = sipguard.Listen(lab.BoxLANIf, []uint16{5060}); return err }); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = cp.Serve(ctx, g) }()
		go func() { defer wg.Done(); _ = g.Run(ctx) }()
		defer func() { cancel(); wg.Wait() }()
		// alice mistypes her password ten times: more than sipguard's auth_failures.
		out, _ := s.sipp(lab.HostRemote, 20, "-sf", scenario("register.xml"), "-i", aliceTun, "-p", "5066",
			"-s", "1001", "-au", "1001", "-ap", "typo", "-m", "10", "-r", "5", lab.PBX4+":5060")
		if !regexp.MustCompile(`403 <-+\s+10 `).MatchString(out) {
			t.Fatalf("the wrong passwords did not all reach the PBX:\n%s", out)
		}
		var alerted bool
		deadline := time.After(10 * time.Second)
		for !alerted {
			select {
			case e := <-seen:
				if e.Kind == "sipguard.block" {
					t.Fatalf("sipguard blocked a VPN peer: %s", e.Message)
				}
				alerted = e.Kind == "sipguard.peer" && e.Fields["addr"] == aliceTun
			case <-deadline:
				t.Fatal("no alert about alice's failures")
			}
		}
		if list, err := s.fw.Blocklist(); err != nil || len(list) != 0 {
			t.Errorf("kernel blocklist %v %v, want empty", list, err)
		}
		out, err = s.sipp(lab.HostRemote, 20, "-sf", scenario("register.xml"), "-i", aliceTun, "-p", "5066",
			"-s", "1001", "-au", "1001", "-ap", "pw1001", "-m", "1", lab.PBX4+":5060")
		if err != nil || !regexp.MustCompile(`200 <-+\s+1 `).MatchString(out) {
			t.Errorf("alice cannot register after her typos: %v\n%s", err, out)
		}
	})

	t.Run("no key", func(t *testing.T) {
		// A host with WireGuard and the box's public key, but a key of its own the box does
		// not know, like a phone that was removed or a stolen config without its key.
		key, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		stranger := strings.Replace(conf, "PrivateKey = ", "PrivateKey = "+key.String()+"\n# was: ", 1)
		stranger = strings.Replace(stranger, "Address = "+aliceTun, "Address = "+bobTun, 1)
		s.phoneUp(lab.HostAttacker, ifName("x"), stranger)
		for _, a := range []string{lab.PBX4 + ":5060", boxTun + ":22", lab.Phone4 + ":8080"} {
			if reaches(l, lab.HostAttacker, a) {
				t.Errorf("a host without a known key reaches %s", a)
			}
		}
		if labtest.SIPAnswers(l, lab.HostAttacker, bobTun, lab.PBX4) || labtest.SIPAnswers(l, lab.HostAttacker, lab.Attacker4, lab.BoxWAN4) {
			t.Error("a host without a known key gets an answer from the PBX")
		}
		d, err := s.device()
		if err != nil || len(d.Peers) != 1 {
			t.Fatalf("box peers %+v %v", d, err)
		}
	})

	t.Run("reload keeps the session", func(t *testing.T) {
		before, err := s.device()
		if err != nil {
			t.Fatal(err)
		}
		// bob brings his own key: the box knows only his public key.
		bob, _ := wgtypes.GeneratePrivateKey()
		s.writeConfig(fmt.Sprintf("\n[vpn.peers.bob]\naddress = %q\npublic_key = %q\n", bobTun, bob.PublicKey()))
		// Someone took the box's tunnel address away meanwhile: the reconcile puts it back.
		if _, err := l.Run(lab.HostBox, "ip", "addr", "flush", "dev", s.boxIf); err != nil {
			t.Fatal(err)
		}
		if err := s.box.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		labtest.WaitFor(t, "bob on the box", 10*time.Second, func() bool {
			d, err := s.device()
			return err == nil && len(d.Peers) == 2
		})
		after, _ := s.device()
		for _, p := range after.Peers {
			if p.PublicKey == before.Peers[0].PublicKey && (p.Endpoint.String() != before.Peers[0].Endpoint.String() || p.LastHandshakeTime.Before(before.Peers[0].LastHandshakeTime)) {
				t.Errorf("alice's session was reset by the reload: before %+v, after %+v", before.Peers[0], p)
			}
		}
		labtest.WaitFor(t, "the box's tunnel address back", 5*time.Second, func() bool {
			out, _ := l.Run(lab.HostBox, "ip", "-4", "addr", "show", "dev", s.boxIf)
			return strings.Contains(out, boxTun+"/24")
		})
		if !labtest.SIPAnswers(l, lab.HostRemote, aliceTun, lab.PBX4) {
			t.Error("alice lost the PBX after the reload")
		}
	})
}

// successful counts the successful calls in a sipp -trace_stat file's last line.
func successful(csv string) int {
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if len(lines) < 2 {
		return 0
	}
	head, last := strings.Split(lines[0], ";"), strings.Split(lines[len(lines)-1], ";")
	for i, h := range head {
		if h == "SuccessfulCall(C)" && i < len(last) {
			n, _ := strconv.Atoi(last[i])
			return n
		}
	}
	return 0
}
