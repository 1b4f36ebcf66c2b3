package voicemove_test

import (
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/voicemove"
	"github.com/officeedge/appliance/wan"
)

var bin string // the appliance, built once

func TestMain(m *testing.M) { sitelab.Main(m, &bin) }

// Ports of this test's call and flood: the PBX's media port is in the lab PBX's rtp_ports.
const (
	pbxMedia   = 10120
	trunkMedia = 31120
	floodPort  = 7120
)

// A UDP flood from the internet at twice the FTTC line's download rate (the ISP's 4 Mbit/s
// queue in front of the box, as a line's own rate limits it) during a call: the calls move to
// LTE (the trunk hears the PBX from the LTE address and, latching on to it, the PBX hears the
// trunk again), an alert says so, the phone's other traffic stays on FTTC; after the flood,
// voice comes back to FTTC.
func TestFloodedLineGivesUpItsCalls(t *testing.T) {
	labtest.RequireRoot(t, "nft", "conntrack", "tc")
	cfg := append(sitelab.Config(`stability = "2s"`), []byte("\n[voice.flood]\ncalm = \"3s\"\n")...)
	s, err := sitelab.Start(lab.Unique(t), bin, t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", s.Log())
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	call := startLatchingCall(t, s.Lab)
	other, err := sitelab.StartStream(s.Lab, 50, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	labtest.WaitFor(t, "the call's media both ways over FTTC", 10*time.Second, func() bool {
		now := call.sent()
		return now > 50 && call.fromAt(lab.BoxWAN4, now-50) >= 0 && call.heardIn(now-50, now-10) >= 35
	})
	if _, err := s.Lab.Run(lab.HostFTTC, "tc", "qdisc", "replace", "dev", "cust0", "root", "tbf", "rate", "4mbit", "burst", "16kb", "latency", "100ms"); err != nil {
		t.Fatal(err)
	}
	status := func() voicemove.Status {
		var st voicemove.Status
		if err := s.Client().GetJSON(voicemove.Path, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); st.Moved || st.Line != "FTTC" {
		t.Fatalf("before the flood: %+v", st)
	}

	stopFlood := flood(t, s.Lab, lab.BoxWAN4+":"+strconv.Itoa(floodPort), 8_000_000)
	labtest.WaitFor(t, "voice moved off the flooded FTTC line", 25*time.Second, func() bool { return status().Moved })
	st := status()
	if st.From != "FTTC" || st.To != "LTE" || st.Relay {
		t.Fatalf("moved: %+v, want direct voice from FTTC to LTE", st)
	}
	rules := func() string {
		out, err := s.Lab.Run(lab.HostBox, "ip", "rule", "list", "priority", "95")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if r := rules(); !strings.Contains(r, "fwmark 0x4000/0x7f00 lookup 102") {
		t.Fatalf("no voice rule to LTE's table while voice is moved:\n%s", r)
	}
	seq := call.sent()
	labtest.WaitFor(t, "the trunk hearing the PBX from the LTE address", 5*time.Second, func() bool { return call.fromAt(lab.BoxLTE4, seq) >= 0 })
	// The trunk latched on to the LTE address: the PBX hears it, through LTE, untouched by
	// the flood.
	labtest.WaitFor(t, "the trunk's media reaching the PBX again", 5*time.Second, func() bool {
		now := call.sent()
		return now >= seq+50 && call.heardIn(now-50, now-10) >= 38
	})
	if !alertActive(t, s, voicemove.AlertKey) {
		t.Fatal("no voice.moved alert while voice is moved")
	}
	ws, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if ws.Active != wan.Primary {
		t.Fatalf("the office's traffic went to %s: only voice may move", ws.Active)
	}
	oseq := other.Sent()
	labtest.WaitFor(t, "the phone's other traffic still leaving through FTTC", 5*time.Second, func() bool {
		return other.ArrivedFromSince(lab.BoxWAN4, oseq) >= 10 && other.ArrivedFromSince(lab.BoxLTE4, oseq) == 0
	})

	stopFlood()
	labtest.WaitFor(t, "voice back on FTTC after the flood", 15*time.Second, func() bool { return !status().Moved })
	seq = call.sent()
	labtest.WaitFor(t, "the trunk hearing the PBX from the FTTC address again", 5*time.Second, func() bool { return call.fromAt(lab.BoxWAN4, seq) >= 0 })
	if alertActive(t, s, voicemove.AlertKey) {
		t.Fatal("the voice.moved alert is still active after voice came back")
	}
	if r := rules(); strings.TrimSpace(r) != "" {
		t.Fatalf("the voice rule outlived the move:\n%s", r)
	}
}

func alertActive(t *testing.T, s *sitelab.Site, key string) bool {
	t.Helper()
	as, err := s.Client().Alerts()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Key == key {
			return a.Active
		}
	}
	return false
}

// flood sends rate bit/s of 1000-byte UDP datagrams from the attacker to dst until the
// returned func is called (or the test ends).
func flood(t *testing.T, l *lab.Lab, dst string, rate int) func() {
	c, err := l.DialUDP(lab.HostAttacker, "", dst)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	per := rate / 8 / len(buf) / 100 // datagrams every 10 ms
	stop := sitelab.Every(10*time.Millisecond, 0, func() {
		for range per {
			_, _ = c.Write(buf)
		}
	})
	end := sync.OnceFunc(func() { stop(); c.Close() })
	t.Cleanup(end)
	return end
}

// latchingCall is a call's media between the PBX and a trunk with symmetric RTP: every
// 20 ms the PBX sends a packet to the trunk, and the trunk one back to wherever the PBX's
// media last came from (it latches on to the office's new address, as SBCs do); both carry
// the tick's number.
type latchingCall struct {
	mu    sync.Mutex
	seq   uint32
	from  []string // by tick - 1: the address the trunk heard the PBX's packet from
	heard []bool   // by tick - 1: the PBX heard the trunk's packet
}

func startLatchingCall(t *testing.T, l *lab.Lab) *latchingCall {
	pbx, err := l.ListenUDP(lab.HostPBX, lab.PBX4+":"+strconv.Itoa(pbxMedia))
	if err != nil {
		t.Fatal(err)
	}
	trunk, err := l.ListenUDP(lab.HostTrunk, lab.Trunk4+":"+strconv.Itoa(trunkMedia))
	if err != nil {
		pbx.Close()
		t.Fatal(err)
	}
	c := &latchingCall{}
	const most = 50 * 120 // two minutes of packets: the bound of the records
	var latched *net.UDPAddr
	// The trunk hears the PBX and latches.
	trunkRead := sitelab.ReadUDP(trunk, 256, func(b []byte, from *net.UDPAddr) {
		if len(b) < 4 {
			return
		}
		c.mu.Lock()
		if i := binary.BigEndian.Uint32(b) - 1; i < uint32(len(c.from)) {
			c.from[i] = from.IP.String()
		}
		latched = from
		c.mu.Unlock()
	})
	// The PBX hears the trunk.
	pbxRead := sitelab.ReadUDP(pbx, 256, func(b []byte, _ *net.UDPAddr) {
		if len(b) < 4 {
			return
		}
		c.mu.Lock()
		if i := binary.BigEndian.Uint32(b) - 1; i < uint32(len(c.heard)) {
			c.heard[i] = true
		}
		c.mu.Unlock()
	})
	// Both send every 20 ms.
	buf := make([]byte, 172) // an RTP header and a G.711 frame
	to := &net.UDPAddr{IP: net.ParseIP(lab.Trunk4), Port: trunkMedia}
	stop := sitelab.Every(20*time.Millisecond, most, func() {
		c.mu.Lock()
		c.seq++
		c.from, c.heard = append(c.from, ""), append(c.heard, false)
		binary.BigEndian.PutUint32(buf, c.seq)
		back := latched
		c.mu.Unlock()
		_, _ = pbx.WriteToUDP(buf, to)
		if back != nil {
			_, _ = trunk.WriteToUDP(buf, back)
		}
	})
	t.Cleanup(func() { stop(); pbx.Close(); trunk.Close(); <-trunkRead; <-pbxRead })
	return c
}

// sent is the PBX's last sequence number.
func (c *latchingCall) sent() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// fromAt is the first of the PBX's packets after seq the trunk heard from addr (-1: none).
func (c *latchingCall) fromAt(addr string, seq uint32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := int(seq); i < len(c.from); i++ {
		if c.from[i] == addr {
			return i + 1
		}
	}
	return -1
}

// heardIn counts the trunk's packets of ticks (from, to] the PBX heard.
func (c *latchingCall) heardIn(from, to uint32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for i := int(from); i < int(to) && i < len(c.heard); i++ {
		if c.heard[i] {
			k++
		}
	}
	return k
}

// With the relay, the flood moves the relay's tunnel (the calls' flows inside it stay as
// they are) to LTE: the trunk's media to the relay's address reaches the PBX whole again.
func TestFloodedLineMovesTheRelayTunnel(t *testing.T) {
	labtest.RequireRoot(t, "nft", "conntrack", "tc", "ss")
	r, err := sitelab.NewRelay(bin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := append(r.BoxConfig(sitelab.Config(`stability = "2s"`), false), []byte("\n[voice.flood]\ncalm = \"3s\"\n")...)
	s, err := sitelab.Start(lab.Unique(t), bin, t.TempDir(), cfg, r.Start)
	if err != nil {
		t.Fatalf("%v\nrelay log:\n%s", err, r.Log())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s\nrelay log:\n%s", s.Log(), r.Log())
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	relayOn := func(line string) func() bool {
		return func() bool {
			st, err := s.Client().RelayStatus()
			return err == nil && st.Using == "relay" && st.Line == line
		}
	}
	labtest.WaitFor(t, "the relay carrying voice over FTTC", 20*time.Second, relayOn("FTTC"))
	c, err := sitelab.StartCall(s.Lab, sitelab.CallOptions{SDP: lab.Relay4, PBXPort: pbxMedia + 2, TrunkPort: trunkMedia + 2, Max: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	m := c.Mark()
	labtest.WaitFor(t, "the call's media both ways through the relay", 15*time.Second, func() bool { return c.Flowing(m, 25) })
	if _, err := s.Lab.Run(lab.HostFTTC, "tc", "qdisc", "replace", "dev", "cust0", "root", "tbf", "rate", "4mbit", "burst", "16kb", "latency", "100ms"); err != nil {
		t.Fatal(err)
	}
	stopFlood := flood(t, s.Lab, lab.BoxWAN4+":"+strconv.Itoa(floodPort), 8_000_000)
	var st voicemove.Status
	labtest.WaitFor(t, "voice moved off the flooded FTTC line", 25*time.Second, func() bool {
		return s.Client().GetJSON(voicemove.Path, &st) == nil && st.Moved
	})
	if !st.Relay || st.To != "LTE" {
		t.Fatalf("moved: %+v, want the relay's tunnel moved to LTE", st)
	}
	labtest.WaitFor(t, "the relay's tunnel over LTE", 5*time.Second, relayOn("LTE"))
	m = c.Mark()
	labtest.WaitFor(t, "the trunk's media reaching the PBX whole again", 10*time.Second, func() bool {
		now := c.Mark().ToPBX
		return now > m.ToPBX+60 && c.ToPBX.Lost(now-60, now-10) <= 2
	})
	stopFlood()
	labtest.WaitFor(t, "voice back on FTTC after the flood", 15*time.Second, func() bool {
		return s.Client().GetJSON(voicemove.Path, &st) == nil && !st.Moved
	})
	labtest.WaitFor(t, "the relay's tunnel back over FTTC", 5*time.Second, relayOn("FTTC"))
	m = c.Mark()
	labtest.WaitFor(t, "the call's media both ways after the return", 10*time.Second, func() bool { return c.Flowing(m, 25) })
}
