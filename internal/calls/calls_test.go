package calls

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"golang.org/x/net/bpf"

	"github.com/officeedge/appliance/internal/config"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.4f, want %.4f ± %g", what, got, want, tol)
	}
}

// TestEModelPoints checks the E-model against worked values: G.711 without loss or delay
// rates R 93.2, MOS 4.41 (G.107's default connection); G.113's Ie,eff formula with Bpl
// 25.1 at 1 % random loss gives Ie,eff = 95/26.1 = 3.64; 200 ms one way costs Id = 0.024*200
// + 0.11*22.7 = 7.30.
func TestEModelPoints(t *testing.T) {
	g711 := staticCodecs[0]
	near(t, "R(G.711, no loss, no delay)", rFactor(0, 0, g711), 93.2, 1e-9)
	near(t, "MOS(93.2)", mos(93.2), 4.41, 0.005)
	near(t, "R(1% loss)", rFactor(0.01, 0, g711), 93.2-95.0/26.1, 1e-9)
	near(t, "R(200 ms)", rFactor(0, 200, g711), 93.2-7.297, 1e-9)
	near(t, "MOS(R=50)", mos(50), 1+0.035*50+50*(-10)*50*7e-6, 1e-9)
	if mos(-5) != 1 || mos(120) != 4.5 {
		t.Errorf("MOS out of range: %v %v", mos(-5), mos(120))
	}
	// 5 % loss on G.711 with PLC is a noticeably worse call, still above 3.5 without delay.
	if m := mos(rFactor(0.05, 40, g711)); m < 3.5 || m > 4.0 {
		t.Errorf("MOS at 5%% loss, 40 ms = %.2f", m)
	}
	// 20 % loss is a poor call.
	if m := mos(rFactor(0.20, 40, g711)); m >= 3.5 {
		t.Errorf("MOS at 20%% loss = %.2f, want below 3.5", m)
	}
}

func hdr(seq uint16, ts uint32) *rtp.Header {
	return &rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: ts, SSRC: 0x1234}
}

func pcmu(uint8) uint32 { return 8000 }

// TestJitterRFC3550 follows A.8: packets 20 ms apart (160 timestamp units) arriving
// alternately 5 ms late: every D is 40 units, so J goes 2.5, 4.84... towards 40 units (5 ms).
func TestJitterRFC3550(t *testing.T) {
	var s stream
	base := time.Unix(1000, 0).UnixNano()
	at := func(i int) int64 {
		late := int64(0)
		if i%2 == 1 {
			late = int64(5 * time.Millisecond)
		}
		return base + int64(i)*int64(20*time.Millisecond) + late
	}
	s.add(at(0), hdr(0, 0), pcmu, 0)
	s.add(at(1), hdr(1, 160), pcmu, 0)
	near(t, "J after one difference (units)", s.jitter, 40.0/16, 1e-9)
	s.add(at(2), hdr(2, 320), pcmu, 0)
	near(t, "J after two", s.jitter, 2.5+(40-2.5)/16, 1e-9)
	for i := 3; i < 500; i++ {
		s.add(at(i), hdr(uint16(i), uint32(i*160)), pcmu, 0)
	}
	near(t, "jitter ms", s.jitterMs(), 5, 0.01)
	if s.lost() != 0 || s.expected() != 500 {
		t.Errorf("lost %d of %d, want 0 of 500", s.lost(), s.expected())
	}
}

// TestLossAcrossWrap: sequence numbers wrap at 65535 (A.1's cycles); three lost, one
// duplicated, one reordered.
func TestLossAcrossWrap(t *testing.T) {
	var s stream
	now := time.Unix(1000, 0).UnixNano()
	seqs := []uint16{65530, 65531, 65533, 65534, 65535, 0, 2, 1, 1, 3, 6, 7}
	// expected 65530..7 = 14, received 12 (one duplicate counted, as A.3 does): 2 lost
	// by count (4 and 5 missing, the duplicate of 1 offsets one... A.3 counts duplicates).
	for i, q := range seqs {
		s.add(now+int64(i)*int64(20*time.Millisecond), hdr(q, uint32(q)*160), pcmu, 0)
	}
	if s.expected() != 14 {
		t.Errorf("expected %d, want 14", s.expected())
	}
	if s.received() != 12 || s.lost() != 2 {
		t.Errorf("received %d lost %d, want 12 and 2 (65532, 4, 5 missing; 1 twice)", s.received(), s.lost())
	}
	// A restart far ahead (two sequential packets) folds the old source's counts in.
	s.add(now+int64(time.Second), hdr(30000, 0), pcmu, 0)
	s.add(now+int64(time.Second)+int64(20*time.Millisecond), hdr(30001, 160), pcmu, 0)
	if s.expected() != 15 || s.lost() != 2 {
		t.Errorf("after a restart: expected %d lost %d, want 15 and 2 (A.1: the first packet of a restart is not counted)", s.expected(), s.lost())
	}
}

// udp builds an IPv4 or IPv6 UDP packet, by the addresses' family.
func udp(t testing.TB, src, dst string, payload []byte) []byte {
	t.Helper()
	sa, _ := netip.ParseAddrPort(src)
	da, _ := netip.ParseAddrPort(dst)
	var ip interface {
		gopacket.SerializableLayer
		gopacket.NetworkLayer
	}
	if sa.Addr().Is4() {
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(sa.Addr().AsSlice()), DstIP: net.IP(da.Addr().AsSlice())}
	} else {
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.IP(sa.Addr().AsSlice()), DstIP: net.IP(da.Addr().AsSlice())}
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sa.Port()), DstPort: layers.UDPPort(da.Port())}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const (
	pbx   = "192.168.50.10"
	trunk = "192.0.2.10"
)

func sipMsg(first, callID, from, to, cseq, sdp string) []byte {
	body := ""
	if sdp != "" {
		body = sdp
	}
	return []byte(fmt.Sprintf("%s\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK1\r\nFrom: <sip:%s@x>;tag=a\r\nTo: <sip:%s@y>\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		first, trunk, from, to, callID, cseq, len(body), body))
}

func sdpOf(addr string, port int) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n", addr, addr, port)
}

func rtpPacket(seq uint16, ts uint32, ssrc uint32) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: make([]byte, 160)}
	b, _ := p.Marshal()
	return b
}

// TestTrackerFollowsACall: an inbound call from the trunk to extension 201, answered by
// the PBX; media both ways with every 20th packet to the PBX lost; then the trunk's media
// stops: one-way audio, alerted naming the extension and the line; the BYE ends the call
// into the last day's list with its worst minute.
func TestTrackerFollowsACall(t *testing.T) {
	tr := NewTracker(Settings{PBX: []netip.Addr{netip.MustParseAddr(pbx)}, SIPPort: 5060, MaxCalls: 2, OneWayAfter: 2 * time.Second, MOSAlert: 3.5})
	now := time.Unix(1_700_000_000, 0)
	tr.Handle(now, udp(t, trunk+":5060", pbx+":5060", sipMsg("INVITE sip:201@"+pbx+" SIP/2.0", "abc@trunk", "+441234", "201", "1 INVITE", sdpOf(trunk, 6000))))
	tr.Handle(now, udp(t, pbx+":5060", trunk+":5060", sipMsg("SIP/2.0 180 Ringing", "abc@trunk", "+441234", "201", "1 INVITE", "")))
	if st := tr.Status(now); len(st.Active) != 0 {
		t.Fatalf("a ringing call is listed as a call: %+v", st.Active)
	}
	now = now.Add(time.Second)
	tr.Handle(now, udp(t, pbx+":5060", trunk+":5060", sipMsg("SIP/2.0 200 OK", "abc@trunk", "+441234", "201", "1 INVITE", sdpOf(pbx, 9100))))
	// Stray RTP to a port no SDP named is ignored.
	tr.Handle(now, udp(t, trunk+":7000", pbx+":9200", rtpPacket(1, 160, 9)))
	for i := 0; i < 500; i++ { // 10 s of media
		at := now.Add(time.Duration(i) * 20 * time.Millisecond)
		if i%20 != 5 {
			tr.Handle(at, udp(t, trunk+":6000", pbx+":9100", rtpPacket(uint16(1000+i), uint32(i*160), 0xaaaa)))
		}
		tr.Handle(at, udp(t, pbx+":9100", trunk+":6000", rtpPacket(uint16(50000+i), uint32(i*160), 0xbbbb)))
		if i%50 == 0 {
			tr.Tick(at, "FTTC")
		}
	}
	now = now.Add(10 * time.Second)
	if acts := tr.Tick(now, "FTTC"); len(acts) != 0 {
		t.Errorf("alerts during a two-way call at 5%% loss: %+v", acts)
	}
	st := tr.Status(now)
	if len(st.Active) != 1 {
		t.Fatalf("active calls: %+v", st.Active)
	}
	c := st.Active[0]
	if c.Extension != "201" || c.Remote != "+441234" || c.Direction != "inbound" || c.Line != "FTTC" || c.Codec != "PCMU" {
		t.Errorf("call: %+v", c)
	}
	near(t, "loss to the PBX %", c.ToPBX.LossPct, 5, 0.3)
	near(t, "loss from the PBX %", c.FromPBX.LossPct, 0, 0)
	if c.ToPBX.Packets != 475 || c.FromPBX.Packets != 500 || c.PBXMedia != pbx+":9100" || c.FarMedia != trunk+":6000" {
		t.Errorf("flows: %+v", c)
	}
	if c.MOS <= 1 || c.MOS >= c.FromPBX.MOS {
		t.Errorf("MOS %.2f: the lossy direction (%.2f) should rate below the clean one (%.2f)", c.MOS, c.ToPBX.MOS, c.FromPBX.MOS)
	}

	// The trunk's media stops; the PBX's goes on.
	var acts []Action
	for i := 500; i < 700 && len(acts) == 0; i++ {
		at := now.Add(time.Duration(i-500) * 20 * time.Millisecond)
		tr.Handle(at, udp(t, pbx+":9100", trunk+":6000", rtpPacket(uint16(50000+i), uint32(i*160), 0xbbbb)))
		if i%50 == 0 {
			acts = tr.Tick(at, "LTE")
		}
	}
	if len(acts) != 1 || !acts[0].Raise || !strings.Contains(acts[0].Message, "extension 201") || !strings.Contains(acts[0].Message, "over LTE") || acts[0].Key != "calls.oneway/201" {
		t.Fatalf("one-way audio alert: %+v", acts)
	}
	now = now.Add(4 * time.Second)
	tr.Handle(now, udp(t, trunk+":5060", pbx+":5060", sipMsg("BYE sip:201@"+pbx+" SIP/2.0", "abc@trunk", "+441234", "201", "2 BYE", "")))
	acts = tr.Tick(now, "LTE")
	if len(acts) != 1 || acts[0].Raise || acts[0].Key != "calls.oneway/201" {
		t.Errorf("the alert is not cleared at the call's end: %+v", acts)
	}
	st = tr.Status(now)
	if len(st.Active) != 0 || len(st.Recent) != 1 {
		t.Fatalf("after BYE: %+v", st)
	}
	r := st.Recent[0]
	if !r.OneWay || r.Worst == nil || r.Worst.Direction != DirIn || r.EndReason != "hung up by the far end" || st.Counters.Calls != 1 || st.Counters.OneWay != 1 {
		t.Errorf("ended call: %+v worst %+v counters %+v", r, r.Worst, st.Counters)
	}
}

// TestTrackerBounds: at most MaxCalls calls are followed; refused INVITEs are not calls.
func TestTrackerBounds(t *testing.T) {
	tr := NewTracker(Settings{PBX: []netip.Addr{netip.MustParseAddr(pbx)}, SIPPort: 5060, MaxCalls: 2})
	now := time.Unix(1_700_000_000, 0)
	for i := 0; i < 5; i++ {
		tr.Handle(now, udp(t, trunk+":5060", pbx+":5060", sipMsg("INVITE sip:201@"+pbx+" SIP/2.0", fmt.Sprintf("c%d", i), "1", "201", "1 INVITE", sdpOf(trunk, 6000+2*i))))
	}
	tr.Handle(now, udp(t, pbx+":5060", trunk+":5060", sipMsg("SIP/2.0 486 Busy Here", "c0", "1", "201", "1 INVITE", "")))
	if n, u := len(tr.calls), tr.c.Untracked; n != 1 || u != 3 {
		t.Errorf("%d calls followed, %d untracked; want 1 and 3", n, u)
	}
	tr.Tick(now.Add(setupTimeout+time.Second), "")
	if len(tr.calls) != 0 {
		t.Errorf("an unanswered INVITE is still followed after the setup timeout")
	}
}

// TestFilter runs the BPF program on packets: UDP to and from the PBX on its SIP port and
// media range pass; other ports, other hosts and TCP do not.
func TestFilter(t *testing.T) {
	raw, err := Filter([]netip.Addr{netip.MustParseAddr(pbx), netip.MustParseAddr("2001:db8:50::10")}, 5060, 9000, 10999)
	if err != nil {
		t.Fatal(err)
	}
	ins := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		ins[i] = r.Disassemble()
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src, dst string
		pass     bool
	}{
		{trunk + ":5060", pbx + ":5060", true},
		{pbx + ":5060", trunk + ":5060", true},
		{trunk + ":6000", pbx + ":9100", true},
		{pbx + ":9100", trunk + ":6000", true},
		{pbx + ":11000", trunk + ":6001", true}, // RTCP of the range's last port
		{pbx + ":11001", trunk + ":6001", false},
		{trunk + ":9100", pbx + ":53", false},
		{trunk + ":5060", "192.168.50.20:5060", false},
		{"[2001:db8:1::10]:6000", "[2001:db8:50::10]:9100", true},
		{"[2001:db8:50::10]:9100", "[2001:db8:1::10]:6000", true},
		{"[2001:db8:1::10]:6000", "[2001:db8:50::20]:9100", false},
	} {
		n, err := vm.Run(udp(t, c.src, c.dst, []byte("x")))
		if err != nil || (n > 0) != c.pass {
			t.Errorf("%s -> %s: passed %v (%v), want %v", c.src, c.dst, n > 0, err, c.pass)
		}
	}
}

// TestSDP reads the audio stream's address, port, codec and hold state.
func TestSDP(t *testing.T) {
	m, ok := parseSDP([]byte("v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 96 101\r\nc=IN IP4 10.0.0.2\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=sendonly\r\n"))
	if !ok || m.addr.String() != "10.0.0.2" || m.port != 4000 || m.pt != 96 || m.codec.clock != 48000 || m.events != 101 || !m.hold {
		t.Errorf("parsed %+v %v", m, ok)
	}
	if _, ok := parseSDP([]byte("v=0\r\nm=video 5000 RTP/AVP 96\r\n")); ok {
		t.Error("an SDP without audio was read")
	}
}

// TestRTCPRoundTrip: the PBX's sender report passes the box, the far end's receiver report
// echoes it (LSR) after holding it 500 ms (DLSR); it passes the box 560 ms after the SR:
// the far end is 60 ms away and back (RFC 3550 §6.4.1).
func TestRTCPRoundTrip(t *testing.T) {
	tr := NewTracker(Settings{PBX: []netip.Addr{netip.MustParseAddr(pbx)}, SIPPort: 5060})
	now := time.Unix(1_700_000_000, 0)
	tr.Handle(now, udp(t, trunk+":5060", pbx+":5060", sipMsg("INVITE sip:201@"+pbx+" SIP/2.0", "rtt", "1", "201", "1 INVITE", sdpOf(trunk, 6000))))
	tr.Handle(now, udp(t, pbx+":5060", trunk+":5060", sipMsg("SIP/2.0 200 OK", "rtt", "1", "201", "1 INVITE", sdpOf(pbx, 9100))))
	ntp := uint64(0x83aa7e80_12345678)
	sr, _ := (&rtcp.SenderReport{SSRC: 0xbbbb, NTPTime: ntp}).Marshal()
	tr.Handle(now, udp(t, pbx+":9101", trunk+":6001", sr))
	rr, _ := (&rtcp.ReceiverReport{SSRC: 0xaaaa, Reports: []rtcp.ReceptionReport{{SSRC: 0xbbbb, LastSenderReport: uint32(ntp >> 16), Delay: 65536 / 2}}}).Marshal()
	tr.Handle(now.Add(560*time.Millisecond), udp(t, trunk+":6001", pbx+":9101", rr))
	st := tr.Status(now.Add(time.Second))
	if len(st.Active) != 1 || math.Abs(st.Active[0].RTTMs-60) > 0.01 {
		t.Errorf("round trip: %+v", st.Active)
	}
}

// TestRTPPathDoesNotAllocate: the per-packet path (decode, match, sequence and jitter) is
// the fast path at 50 packets a second per direction per call.
func TestRTPPathDoesNotAllocate(t *testing.T) {
	tr := NewTracker(Settings{PBX: []netip.Addr{netip.MustParseAddr(pbx)}, SIPPort: 5060})
	now := time.Unix(1_700_000_000, 0)
	tr.Handle(now, udp(t, trunk+":5060", pbx+":5060", sipMsg("INVITE sip:201@"+pbx+" SIP/2.0", "fast", "1", "201", "1 INVITE", sdpOf(trunk, 6000))))
	tr.Handle(now, udp(t, pbx+":5060", trunk+":5060", sipMsg("SIP/2.0 200 OK", "fast", "1", "201", "1 INVITE", sdpOf(pbx, 9100))))
	pkts := make([][]byte, 100)
	for i := range pkts {
		pkts[i] = udp(t, trunk+":6000", pbx+":9100", rtpPacket(uint16(i), uint32(i*160), 0xaaaa))
	}
	i := 0
	if n := testing.AllocsPerRun(200, func() {
		now = now.Add(20 * time.Millisecond)
		tr.Handle(now, pkts[i%len(pkts)])
		i++
	}); n != 0 {
		t.Errorf("%.1f allocations per RTP packet, want 0", n)
	}
}

// TestEndedCallsSurviveARestart: the last day's calls are saved crash-safe in the state
// directory and read back by the next start; a damaged file starts empty.
func TestEndedCallsSurviveARestart(t *testing.T) {
	cfg, err := config.Parse("example.toml", config.Example())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := New(Options{Config: cfg, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.PBX.Address.String()
	now := time.Now()
	tr := s.Tracker()
	tr.Handle(now, udp(t, trunk+":5060", p+":5060", sipMsg("INVITE sip:201@"+p+" SIP/2.0", "saved", "1", "201", "1 INVITE", sdpOf(trunk, 6000))))
	tr.Handle(now, udp(t, p+":5060", trunk+":5060", sipMsg("SIP/2.0 200 OK", "saved", "1", "201", "1 INVITE", sdpOf(p, 9100))))
	tr.Handle(now.Add(time.Second), udp(t, p+":5060", trunk+":5060", sipMsg("BYE sip:1@"+trunk+" SIP/2.0", "saved", "201", "1", "2 BYE", "")))
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	s2, err := New(Options{Config: cfg, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.Status(); len(st.Recent) != 1 || st.Recent[0].Extension != "201" || st.Recent[0].EndReason != "hung up by the office" {
		t.Errorf("after a restart: %+v", st.Recent)
	}
	if err := os.WriteFile(filepath.Join(dir, "calls.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s3, err := New(Options{Config: cfg, StateDir: dir}); err != nil || len(s3.Status().Recent) != 0 {
		t.Errorf("a damaged file: %v", err)
	}
}

// TestHoldIsNotOneWay: a call the PBX put on hold (a=sendonly) is quiet one way by design.
func TestHoldIsNotOneWay(t *testing.T) {
	tr := NewTracker(Settings{PBX: []netip.Addr{netip.MustParseAddr(pbx)}, SIPPort: 5060, MOSAlert: 3.5})
	now := time.Unix(1_700_000_000, 0)
	tr.Handle(now, udp(t, trunk+":5060", pbx+":5060", sipMsg("INVITE sip:201@"+pbx+" SIP/2.0", "hold", "1", "201", "1 INVITE", sdpOf(trunk, 6000))))
	held := strings.Replace(sdpOf(pbx, 9100), "a=sendrecv", "a=sendonly", 1)
	tr.Handle(now, udp(t, pbx+":5060", trunk+":5060", sipMsg("SIP/2.0 200 OK", "hold", "1", "201", "1 INVITE", held)))
	for i := 0; i < 300; i++ {
		at := now.Add(time.Duration(i) * 20 * time.Millisecond)
		tr.Handle(at, udp(t, pbx+":9100", trunk+":6000", rtpPacket(uint16(i), uint32(i*160), 0xbbbb)))
		if acts := tr.Tick(at, "FTTC"); len(acts) != 0 {
			t.Fatalf("alerts for a call on hold: %+v", acts)
		}
	}
	if st := tr.Status(now.Add(6 * time.Second)); len(st.Active) != 1 || !st.Active[0].Hold || st.Active[0].OneWay {
		t.Errorf("held call: %+v", st.Active)
	}
}
