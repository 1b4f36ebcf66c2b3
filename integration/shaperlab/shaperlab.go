// Package shaperlab is the shaper's measurement lab on package lab's office: a modem-sized bottleneck at the FTTC ISP, a voice stream with one-way delays, iperf3 uploads (tests and bench-voice).
package shaperlab

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/shaper"
	"github.com/officeedge/appliance/netcfg"
)

// Site is a configured lab box: routes, the appliance's ruleset (voice marks and classes)
// and a handle on the box's namespace for the shaper.
type Site struct {
	L     *lab.Lab
	BoxNS netns.NsHandle
}

// Config is the lab's config with upload set on the primary (FTTC) uplink, and lines added
// to it (e.g. `upload_min = "1Mbit"`).
func Config(upload string, lines ...string) []byte {
	extra := "upload = " + strconv.Quote(upload) + "\n" + strings.Join(lines, "\n")
	return []byte(strings.Replace(string(lab.Config), "[uplink.primary]\n", "[uplink.primary]\n"+extra+"\n", 1))
}

// New configures l's box as the daemon would (addresses, routes, the ruleset of cfg) and
// returns the site; cfg nil is Config("4Mbit").
func New(l *lab.Lab, cfg []byte) (*Site, *config.Config, error) {
	if cfg == nil {
		cfg = Config("4Mbit")
	}
	c, err := config.Parse("lab.toml", cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := l.ConfigureBox(); err != nil {
		return nil, nil, err
	}
	h, err := netns.GetFromName(l.NS(lab.HostBox))
	if err != nil {
		return nil, nil, err
	}
	if err := netcfg.New(int(h)).Apply(netcfg.Build(c)); err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("apply the ruleset: %w", err)
	}
	return &Site{L: l, BoxNS: h}, c, nil
}

// Close lets go of the namespace handle (the lab removes the namespaces).
func (s *Site) Close() { s.BoxNS.Close() }

// Bottleneck makes the FTTC ISP's egress to the internet a line of rate (tc syntax: "4mbit")
// with a modem-sized queue (300 ms), as the figures were measured.
func (s *Site) Bottleneck(rate string) error {
	out, err := s.L.Command(lab.HostFTTC, "tc", "qdisc", "replace", "dev", "up0", "root", "handle", "1:", "tbf",
		"rate", rate, "burst", "10kb", "latency", "300ms").CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc tbf %s: %v: %s", rate, err, out)
	}
	return nil
}

// VoicePort is the PBX's media port of the stream (in the lab's rtp_ports, so it is voice).
const VoicePort = 9050

// Voice is a call's media from the PBX to the trunk at 50 packets/s (20 ms, G.711-sized);
// each packet carries its send time, and the namespaces share the clock, so the trunk reads
// one-way delays.
type Voice struct {
	conn, rx *net.UDPConn
	mu       sync.Mutex
	got      []sample // bounded: maxSamples
	stop     chan struct{}
	wg       sync.WaitGroup
	tos      atomic.Uint32 // of the last packet received
}

// DSCP is the DSCP of the last packet the trunk received.
func (v *Voice) DSCP() int { return int(v.tos.Load() >> 2) }

type sample struct {
	at    time.Time
	delay time.Duration
}

const maxSamples = 50 * 600 // ten minutes of packets

// StartVoice starts the stream; trunkPort is the trunk's receiving port.
func (s *Site) StartVoice(trunkPort int) (*Voice, error) {
	addr := net.JoinHostPort(lab.Trunk4, strconv.Itoa(trunkPort))
	rx, err := s.L.ListenUDP(lab.HostTrunk, addr)
	if err != nil {
		return nil, err
	}
	tx, err := s.L.DialUDP(lab.HostPBX, net.JoinHostPort(lab.PBX4, strconv.Itoa(VoicePort)), addr)
	if err != nil {
		rx.Close()
		return nil, err
	}
	// The trunk reads each packet's TOS byte: the DSCP the box marked it with.
	if rc, err := rx.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1) })
	}
	v := &Voice{conn: tx, rx: rx, stop: make(chan struct{})}
	v.wg.Add(2)
	go v.send()
	go v.receive()
	return v, nil
}

func (v *Voice) send() {
	defer v.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := make([]byte, 172) // RTP header + 160 bytes of G.711
	for {
		select {
		case <-v.stop:
			return
		case <-tick.C:
		}
		binary.BigEndian.PutUint64(pkt, uint64(time.Now().UnixNano()))
		_, _ = v.conn.Write(pkt)
	}
}

func (v *Voice) receive() {
	defer v.wg.Done()
	buf, oob := make([]byte, 2048), make([]byte, 64)
	for {
		n, oobn, _, _, err := v.rx.ReadMsgUDP(buf, oob)
		if err != nil {
			return
		}
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) > 0 {
					v.tos.Store(uint32(m.Data[0]))
				}
			}
		}
		if n < 8 {
			continue
		}
		now := time.Now()
		d := now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(buf))))
		v.mu.Lock()
		if len(v.got) >= maxSamples {
			v.got = slices.Delete(v.got, 0, len(v.got)/2)
		}
		v.got = append(v.got, sample{now, d})
		v.mu.Unlock()
	}
}

// Delays are the one-way delays of the packets received in [from, to).
func (v *Voice) Delays(from, to time.Time) []time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []time.Duration
	for _, s := range v.got {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s.delay)
		}
	}
	return out
}

// Close stops the stream.
func (v *Voice) Close() {
	close(v.stop)
	v.conn.Close()
	v.rx.Close()
	v.wg.Wait()
}

// Percentile is the p-th percentile (0-100) of ds; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// Ms is d in milliseconds with one decimal, for bench lines.
func Ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64)
}

// Upload is an office PC's upload to an internet host with iperf3 (TCP, streams in parallel).
type Upload struct {
	s        *Site
	srv, cli *exec.Cmd
}

// StartUpload runs iperf3 from the phone's host (an office PC) to the remote office's host
// for d, on port; extra are more iperf3 client flags (e.g. "-b", "90M").
func (s *Site) StartUpload(port, streams int, d time.Duration, extra ...string) (*Upload, error) {
	p := strconv.Itoa(port)
	srv, err := s.L.Start(lab.HostRemote, "iperf3", "-s", "-B", lab.Remote4, "-p", p)
	if err != nil {
		return nil, err
	}
	u := &Upload{s: s, srv: srv}
	// iperf3 has no wait-for-server option: wait until the port listens.
	for deadline := time.Now().Add(5 * time.Second); ; {
		out, _ := s.L.Run(lab.HostRemote, "ss", "-Hltn", "sport = :"+p)
		if strings.TrimSpace(out) != "" {
			break
		}
		if time.Now().After(deadline) {
			_ = s.L.Stop(srv)
			return nil, fmt.Errorf("iperf3 server did not listen on %s: %s", p, tail(s.L.Output(srv)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	secs := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	cli, err := s.L.Start(lab.HostPhone, append([]string{"iperf3", "-c", lab.Remote4, "-p", p, "-P", strconv.Itoa(streams), "-t", secs, "-J"}, extra...)...)
	if err != nil {
		_ = s.L.Stop(srv)
		return nil, err
	}
	u.cli = cli
	return u, nil
}

// Wait waits for the upload and returns what the server received, in bit/s.
func (u *Upload) Wait() (float64, error) {
	defer func() { _ = u.s.L.Stop(u.srv) }()
	if err := u.s.L.Wait(u.cli); err != nil {
		return 0, fmt.Errorf("iperf3: %v: %s", err, tail(u.s.L.Output(u.cli)))
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	out := u.s.L.Output(u.cli)
	if err := json.NewDecoder(bytes.NewReader([]byte(out))).Decode(&r); err != nil {
		return 0, fmt.Errorf("iperf3 output: %v: %s", err, tail(out))
	}
	if r.Error != "" {
		return 0, errors.New("iperf3: " + r.Error)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

func tail(s string) string {
	if len(s) > 500 {
		return s[len(s)-500:]
	}
	return s
}

// Pinger is the line's round trip from the box through wan0 to a probe target every 100 ms,
// as wan's probes measure it (the daemon's RTT source; here without the daemon).
type Pinger struct {
	s   *Site
	cmd *exec.Cmd
}

// StartPinger starts ping in the box.
func (s *Site) StartPinger() (*Pinger, error) {
	cmd, err := s.L.Start(lab.HostBox, "ping", "-n", "-i", "0.1", "-I", lab.BoxWANIf, lab.Probe4)
	if err != nil {
		return nil, err
	}
	return &Pinger{s: s, cmd: cmd}, nil
}

var replyRE = regexp.MustCompile(`icmp_seq=([0-9]+) .*time=([0-9.]+) ms`)

// RTT is the last round trip, as the daemon gives autorate wan's (At tells the samples apart).
func (p *Pinger) RTT(string) map[string]shaper.Sample {
	out := p.s.L.Output(p.cmd)
	if i := len(out) - 2000; i > 0 {
		out = out[i:]
	}
	m := replyRE.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return nil
	}
	last := m[len(m)-1]
	seq, _ := strconv.Atoi(last[1])
	ms, _ := strconv.ParseFloat(last[2], 64)
	return map[string]shaper.Sample{"icmp:" + lab.Probe4: {RTT: time.Duration(ms * float64(time.Millisecond)), At: time.Unix(int64(seq), 0)}}
}

// Close stops ping.
func (p *Pinger) Close() { _ = p.s.L.Stop(p.cmd) }

// Stop ends the upload early (client and server, by PID).
func (u *Upload) Stop() {
	_ = u.s.L.Stop(u.cli)
	_ = u.s.L.Stop(u.srv)
}

// Pids are the iperf3 client's and server's process ids (`ip netns exec` execs them).
func (u *Upload) Pids() []int { return []int{u.cli.Process.Pid, u.srv.Process.Pid} }

// SpeedServer is the other end of shaper.Speedtest in the lab: GET sends zeros for up to
// max, POST reads and discards up to 10 GiB and answers how many bytes it took.
func SpeedServer(max time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			buf := make([]byte, 64<<10)
			end := time.Now().Add(max)
			for time.Now().Before(end) && r.Context().Err() == nil {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		case http.MethodPost:
			n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 10<<30))
			fmt.Fprintf(w, "%d\n", n)
		default:
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
		}
	})
}
