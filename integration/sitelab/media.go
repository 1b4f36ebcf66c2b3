package sitelab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/officeedge/appliance/internal/lab"
)

// A call's media, both ways between the office PBX and the trunk, as RTP at a steady rate.
// The trunk sends where the call's SDP said (the office's voice address) and never latches
// on to the address the PBX's media comes from, as most carriers and SBCs do: so a call
// survives a line failure only if that address still reaches the office.

// Media ports of the lab's call: the PBX's is in the lab PBX's rtp_ports (9000-10999), the
// trunk's anywhere on the trunk.
const (
	CallPBXPort   = 10002
	CallTrunkPort = 31000
)

// CallOptions say where a call's media goes.
type CallOptions struct {
	// SDP is the address the trunk sends the PBX's media to (the relay's public address, or
	// the box's FTTC address without a relay), at PBXPort.
	SDP       string
	PBXPort   int           // default CallPBXPort
	TrunkPort int           // default CallTrunkPort
	Rate      int           // packets a second each way; default 50 (20 ms G.711 frames)
	Max       time.Duration // the call ends by itself after this; default 5 minutes
}

// Call is an active call: the PBX (lab.HostPBX) and the trunk (lab.HostTrunk) each send Rate
// RTP packets a second to the other and record what arrives.
type Call struct {
	Rate    int
	ToPBX   *Leg // the trunk's media, as the PBX receives it
	ToTrunk *Leg // the PBX's media, as the trunk receives it
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// Leg is one direction of a call: the packets sent (their sequence numbers) and what arrived.
type Leg struct {
	rate int
	ssrc uint32
	send *net.UDPConn // of the sending end
	to   *net.UDPAddr
	mu   sync.Mutex
	sent uint32    // packets sent so far: sequence numbers 1..sent
	got  []Arrival // bounded: at most max
	max  int
}

// StartCall starts a call's media both ways.
func StartCall(l *lab.Lab, o CallOptions) (*Call, error) {
	if o.PBXPort == 0 {
		o.PBXPort = CallPBXPort
	}
	if o.TrunkPort == 0 {
		o.TrunkPort = CallTrunkPort
	}
	if o.Rate == 0 {
		o.Rate = 50
	}
	if o.Max == 0 {
		o.Max = 5 * time.Minute
	}
	sdp, err := netip.ParseAddr(o.SDP)
	if err != nil {
		return nil, fmt.Errorf("sitelab: call: SDP address: %w", err)
	}
	pbx, err := l.ListenUDP(lab.HostPBX, fmt.Sprintf("%s:%d", lab.PBX4, o.PBXPort))
	if err != nil {
		return nil, err
	}
	trunk, err := l.ListenUDP(lab.HostTrunk, fmt.Sprintf("%s:%d", lab.Trunk4, o.TrunkPort))
	if err != nil {
		pbx.Close()
		return nil, err
	}
	// Each end's packets are bounded by the call's length (twice, for duplicates and strays).
	max := 2 * o.Rate * int(o.Max/time.Second+1)
	c := &Call{Rate: o.Rate, stop: make(chan struct{}),
		ToTrunk: &Leg{rate: o.Rate, ssrc: 0x0ff1ce01, send: pbx, to: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(fmt.Sprintf("%s:%d", lab.Trunk4, o.TrunkPort))), max: max},
		ToPBX:   &Leg{rate: o.Rate, ssrc: 0x7a0c0002, send: trunk, to: net.UDPAddrFromAddrPort(netip.AddrPortFrom(sdp, uint16(o.PBXPort))), max: max},
	}
	// Symmetric RTP: each end receives on the socket it sends from.
	c.wg.Add(4)
	go func() { defer c.wg.Done(); c.ToPBX.receive(pbx) }()
	go func() { defer c.wg.Done(); c.ToTrunk.receive(trunk) }()
	end := time.Now().Add(o.Max)
	go func() { defer c.wg.Done(); c.ToTrunk.run(c.stop, end) }()
	go func() { defer c.wg.Done(); c.ToPBX.run(c.stop, end) }()
	return c, nil
}

// run sends the leg's packets until stop or end.
func (g *Leg) run(stop <-chan struct{}, end time.Time) {
	tick := time.NewTicker(time.Second / time.Duration(g.rate))
	defer tick.Stop()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: g.ssrc}, Payload: make([]byte, 160)}
	buf := make([]byte, 0, 200)
	for time.Now().Before(end) {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		g.mu.Lock()
		g.sent++
		seq := g.sent
		g.mu.Unlock()
		p.SequenceNumber = uint16(seq)
		p.Timestamp = seq * 160
		n, err := p.Header.MarshalTo(buf[:cap(buf)])
		if err != nil {
			return
		}
		_, _ = g.send.WriteToUDP(append(buf[:n], p.Payload...), g.to) // errors (no route for a moment) are losses
	}
}

// receive records the leg's packets arriving on c until it is closed.
func (g *Leg) receive(c *net.UDPConn) {
	buf := make([]byte, 2048)
	var p rtp.Packet
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error of a dead path
		}
		if p.Unmarshal(buf[:n]) != nil || p.SSRC != g.ssrc {
			continue // not this call's
		}
		g.mu.Lock()
		if len(g.got) < g.max {
			g.got = append(g.got, Arrival{g.extend(p.SequenceNumber), time.Now(), from.Addr().Unmap().String()})
		}
		g.mu.Unlock()
	}
}

// extend is the 32-bit sequence number of a 16-bit one: the one nearest to the last sent
// (RFC 3550's extended sequence number; a call past 21 minutes at 50/s wraps).
func (g *Leg) extend(s uint16) uint32 {
	ext := g.sent&^0xffff | uint32(s)
	if ext > g.sent+0x8000 && ext >= 0x10000 {
		ext -= 0x10000
	}
	return ext
}

// Sent is the last sequence number sent on the leg.
func (g *Leg) Sent() uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sent
}

// ArrivedSince counts the packets numbered above seq that arrived (each once).
func (g *Leg) ArrivedSince(seq uint32) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[uint32]bool{}
	for _, a := range g.got {
		if a.Seq > seq {
			seen[a.Seq] = true
		}
	}
	return len(seen)
}

// From lists the addresses the leg's packets numbered above seq came from, in order of
// first arrival: who the receiving end saw sending the media.
func (g *Leg) From(seq uint32) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, a := range g.got {
		if a.Seq > seq && !seen[a.From] {
			seen[a.From] = true
			out = append(out, a.From)
		}
	}
	return out
}

// Gap is the longest run of packets numbered (from, to] that never arrived, as time at the
// leg's rate: how long the listener heard nothing.
func (g *Leg) Gap(from, to uint32) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[uint32]bool{}
	for _, a := range g.got {
		seen[a.Seq] = true
	}
	longest, run := 0, 0
	for s := from + 1; s <= to; s++ {
		if seen[s] {
			run = 0
			continue
		}
		run++
		longest = max(longest, run)
	}
	return time.Duration(longest) * time.Second / time.Duration(g.rate)
}

// Lost counts the packets numbered (from, to] that never arrived.
func (g *Leg) Lost(from, to uint32) int {
	if to <= from {
		return 0
	}
	return int(to-from) - g.arrivedIn(from, to)
}

func (g *Leg) arrivedIn(from, to uint32) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[uint32]bool{}
	for _, a := range g.got {
		if a.Seq > from && a.Seq <= to {
			seen[a.Seq] = true
		}
	}
	return len(seen)
}

// AtEnd says whether the leg's media was still heard at the end of the call: at least half
// of the last second's packets arrived (leaving out the last 200 ms, which may have been on
// their way when the call stopped).
func (g *Leg) AtEnd() bool {
	to := g.Sent()
	to -= min(to, uint32(g.rate/5))
	from := to - min(to, uint32(g.rate))
	return to > from && 2*g.arrivedIn(from, to) >= int(to-from)
}

// Mark is the last sequence number sent each way: a point in the call.
type Mark struct{ ToPBX, ToTrunk uint32 }

// Mark is now, in the call.
func (c *Call) Mark() Mark { return Mark{c.ToPBX.Sent(), c.ToTrunk.Sent()} }

// Flowing says whether at least n packets sent after m arrived each way: the media runs
// both ways.
func (c *Call) Flowing(m Mark, n int) bool {
	return c.ToPBX.ArrivedSince(m.ToPBX) >= n && c.ToTrunk.ArrivedSince(m.ToTrunk) >= n
}

// Gaps is the longest silence each way since m, leaving out the packets sent in the last
// 200 ms (they may still be on their way).
func (c *Call) Gaps(m Mark) (toPBX, toTrunk time.Duration) {
	tail := uint32(c.Rate / 5)
	now := c.Mark()
	return c.ToPBX.Gap(m.ToPBX, now.ToPBX-min(now.ToPBX, tail)), c.ToTrunk.Gap(m.ToTrunk, now.ToTrunk-min(now.ToTrunk, tail))
}

// Stop ends the call's media; the legs keep what arrived. Calling it again does nothing.
func (c *Call) Stop() {
	c.once.Do(func() {
		close(c.stop)
		c.ToPBX.send.Close()
		c.ToTrunk.send.Close()
		c.wg.Wait()
	})
}
