package sipguard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/capture"
	"github.com/officeedge/appliance/internal/events"
)

type ipInfo struct {
	src, dst     netip.Addr
	sport, dport uint16
	tcp          bool
	tlsSYN       bool // a new connection to the TLS port: counted, not readable
	seq, ack     uint32
	flags        byte  // TCP flags
	proof        Proof // the segment is on a connection its source completed (proof.go)
	payload      []byte
}

// decodeIP reads the IPv4/IPv6 and UDP/TCP headers of a raw packet. Fragments after the
// first, unknown protocols and short packets are refused.
func decodeIP(b []byte, tlsPort uint16) (ipInfo, bool) {
	var ip ipInfo
	if len(b) < 20 {
		return ip, false
	}
	var proto byte
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || len(b) < ihl || binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return ip, false
		}
		if tot >= ihl && tot < len(b) {
			b = b[:tot] // Ethernet padding
		}
		proto = b[9]
		ip.src = netip.AddrFrom4([4]byte(b[12:16]))
		ip.dst = netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[ihl:]
	case 6:
		if len(b) < 40 {
			return ip, false
		}
		proto = b[6]
		ip.src = netip.AddrFrom16([16]byte(b[8:24]))
		ip.dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:]
		if pl := int(binary.BigEndian.Uint16(b[4:6])); pl < len(l4) {
			l4 = l4[:pl]
		}
		// Skip extension headers: the kernel forwards SIP behind a Destination Options or
		// Hop-by-Hop header, so an attacker adding one must not slip past detection.
		for i := 0; i < 8; i++ {
			switch proto {
			case 0, 43, 60: // hop-by-hop, routing, destination options: (len+1)*8 bytes
				if len(l4) < 8 || len(l4) < (int(l4[1])+1)*8 {
					return ip, false
				}
				proto, l4 = l4[0], l4[(int(l4[1])+1)*8:]
				continue
			case 44: // fragment: only the first one has the transport header
				if len(l4) < 8 || binary.BigEndian.Uint16(l4[2:4])&^7 != 0 {
					return ip, false
				}
				proto, l4 = l4[0], l4[8:]
				continue
			}
			break
		}
	default:
		return ip, false
	}
	switch proto {
	case unix.IPPROTO_UDP:
		if len(l4) < 8 {
			return ip, false
		}
		ip.sport, ip.dport = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		ip.payload = l4[8:]
	case unix.IPPROTO_TCP:
		if len(l4) < 20 {
			return ip, false
		}
		ip.tcp = true
		ip.sport, ip.dport = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		off := int(l4[12]>>4) * 4
		if off < 20 || off > len(l4) {
			return ip, false
		}
		flags := l4[13]
		ip.seq, ip.ack, ip.flags = binary.BigEndian.Uint32(l4[4:8]), binary.BigEndian.Uint32(l4[8:12]), flags
		if tlsPort != 0 && ip.dport == tlsPort {
			ip.tlsSYN = flags&0x12 == 0x02
			return ip, true
		}
		if tlsPort != 0 && ip.sport == tlsPort {
			return ip, true
		}
		ip.payload = l4[off:]
	default:
		return ip, false
	}
	return ip, true
}

// Filter is the in-kernel classic BPF program for a cooked (SOCK_DGRAM) packet socket: it
// passes only first fragments of UDP/TCP over IPv4/IPv6 to or from one of ports, so the
// kernel copies nothing else to user space; IPv6 packets with extension headers all pass
// (Capturer checks their ports once decodeIP has skipped the headers).
func Filter(ports []uint16) ([]bpf.RawInstruction, error) {
	var p capture.Prog
	portChecks := func(load func(off uint32) bpf.Instruction) {
		for _, off := range []uint32{0, 2} {
			p.Emit(load(off))
			for _, port := range ports {
				p.JEq(uint32(port), "accept")
			}
		}
		p.JA("drop")
	}
	p.IPStart()
	p.JEq(unix.IPPROTO_UDP, "v4ports")
	p.JEq(unix.IPPROTO_TCP, "v4ports")
	p.JA("drop")
	p.Label("v4ports")
	p.Emit(bpf.LoadMemShift{Off: 0})
	portChecks(func(off uint32) bpf.Instruction { return bpf.LoadIndirect{Off: off, Size: 2} })
	p.Label("v6")
	p.Emit(bpf.LoadAbsolute{Off: 6, Size: 1})
	p.JEq(unix.IPPROTO_UDP, "v6ports")
	p.JEq(unix.IPPROTO_TCP, "v6ports")
	// Extension headers have no fixed length for classic BPF to skip: user space does.
	for _, h := range []uint32{0, 43, 60, 44} {
		p.JEq(h, "accept")
	}
	p.JA("drop")
	p.Label("v6ports")
	portChecks(func(off uint32) bpf.Instruction { return bpf.LoadAbsolute{Off: 40 + off, Size: 2} })
	p.Label("drop")
	p.Emit(bpf.RetConstant{Val: 0})
	p.Label("accept")
	p.Emit(bpf.RetConstant{Val: 65535})
	raw, err := p.Assemble()
	if errors.Is(err, capture.ErrTooLong) {
		return nil, fmt.Errorf("sipguard: bpf program too long for %d ports", len(ports))
	}
	if err != nil {
		return nil, fmt.Errorf("sipguard: %w", err)
	}
	return raw, nil
}

// Capturer is a packet socket on one interface with the SIP filter attached.
type Capturer struct {
	c     *packet.Conn
	name  string
	ports []uint16
	prog  []bpf.RawInstruction
	ns    netns.NsHandle // the namespace Listen ran in: the socket is re-opened there
}

// Listen opens the capture socket. It belongs to the network namespace of the calling
// thread, so a test can open it inside the lab's box namespace and read it from anywhere.
//
// sipguard listens on the LAN interface: every SIP packet to or from the PBX crosses it exactly
// once (requests from the internet on their way out to the PBX, after DNAT; the PBX's answers
// and its own requests to trunks on their way in), and only after the kernel blocklist in
// the raw prerouting hook. A blocked source therefore costs nothing here: its packets never
// reach the LAN, so they are never copied to user space. Uplinks can be added (interfaces
// in [sipguard]) to also watch traffic the forward chain refuses anyway.
func Listen(ifname string, ports []uint16) (*Capturer, error) {
	prog, err := Filter(ports)
	if err != nil {
		return nil, err
	}
	c, err := openPacket(ifname, prog)
	if err != nil {
		return nil, err
	}
	// Without a handle on the namespace, re-opening happens in the serving thread's.
	ns, err := netns.Get()
	if err != nil {
		ns = netns.None()
	}
	return &Capturer{c: c, name: ifname, ports: ports, prog: prog, ns: ns}, nil
}

// openPacket opens a cooked packet socket on ifname, in the calling thread's namespace.
func openPacket(ifname string, prog []bpf.RawInstruction) (*packet.Conn, error) {
	c, err := capture.Open(ifname, prog)
	if err != nil {
		return nil, fmt.Errorf("sipguard: %w", err)
	}
	return c, nil
}

// reopen opens a new socket on the interface in the Capturer's namespace.
func (cp *Capturer) reopen() (*packet.Conn, error) {
	if !cp.ns.IsOpen() {
		return openPacket(cp.name, cp.prog)
	}
	type result struct {
		c   *packet.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, switched to another namespace, is retired with
		// this goroutine instead of going back to the scheduler.
		runtime.LockOSThread()
		if err := netns.Set(cp.ns); err != nil {
			done <- result{nil, fmt.Errorf("sipguard: capture on %s: enter namespace: %w", cp.name, err)}
			return
		}
		c, err := openPacket(cp.name, cp.prog)
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// Serve hands every captured packet to g until ctx ends; it closes the socket. When the
// interface goes down or away, capture pauses until it is back up, then resumes on a new
// socket; other errors end Serve.
func (cp *Capturer) Serve(ctx context.Context, g *Guard) error {
	defer func() {
		if cp.c != nil {
			cp.c.Close()
		}
		if cp.ns.IsOpen() {
			cp.ns.Close()
		}
	}()
	buf := make([]byte, 65536)
	for {
		err := cp.read(ctx, g, buf)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		why, down := capture.LinkGone(err)
		if !down {
			return fmt.Errorf("sipguard: capture on %s: %w", cp.name, err)
		}
		cp.c.Close()
		cp.c = nil
		g.captureEvent(cp.name, events.Warn, fmt.Sprintf("capture on %s paused: %s", cp.name, why))
		if err := cp.resume(ctx); err != nil || ctx.Err() != nil {
			return err
		}
		g.captureEvent(cp.name, events.Info, fmt.Sprintf("capture on %s resumed", cp.name))
	}
}

// read serves packets from the current socket until ctx ends (nil) or reading fails.
func (cp *Capturer) read(ctx context.Context, g *Guard, buf []byte) error {
	c := cp.c
	defer cp.pollDrops(c, g)
	return capture.Read(ctx, c, buf, func(now time.Time, b []byte) {
		if sipPorts(b, cp.ports) {
			g.Handle(now, b)
		}
	}, func(n uint64) { g.addDrops(n) })
}

// pollDrops adds the packets the kernel dropped on the socket since the last poll to g's
// Stats: a full socket buffer under a flood means detection missed packets, and that must show.
func (cp *Capturer) pollDrops(c *packet.Conn, g *Guard) {
	if n := capture.Drops(c); n > 0 {
		g.addDrops(n)
	}
}

// addDrops counts n packets the kernel dropped on a capture socket.
func (g *Guard) addDrops(n uint64) {
	g.mu.Lock()
	g.Stats.CaptureDrops += n
	g.Stats.Dropped += n
	g.mu.Unlock()
}

// resume waits until the interface exists and is up, then opens a new socket on it. It
// returns nil with no socket when ctx ends.
func (cp *Capturer) resume(ctx context.Context) error {
	h, err := cp.linkHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	tick := time.NewTicker(capture.LinkPoll)
	defer tick.Stop()
	for {
		// The first look comes one poll later too: a link that flaps cannot spin this loop.
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if !linkUp(h, cp.name) {
			continue
		}
		c, err := cp.reopen()
		if err == nil {
			cp.c = c
			return nil
		}
		if linkUp(h, cp.name) {
			return err // up, and still no socket: not the link's doing
		}
		// It went away again between the look and the open: keep waiting.
	}
}

// linkHandle is a netlink handle in the Capturer's namespace.
func (cp *Capturer) linkHandle() (*netlink.Handle, error) {
	var h *netlink.Handle
	var err error
	if cp.ns.IsOpen() {
		h, err = netlink.NewHandleAt(cp.ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("sipguard: capture on %s: watch the link: %w", cp.name, err)
	}
	return h, nil
}

// linkUp reports whether the interface exists and is administratively up.
func linkUp(h *netlink.Handle, name string) bool {
	l, err := h.LinkByName(name)
	return err == nil && l.Attrs().Flags&net.FlagUp != 0
}

// sipPorts does, for an IPv6 packet with extension headers, the port check the BPF filter
// could not; every other packet the filter passed is to or from a SIP port already.
func sipPorts(b []byte, ports []uint16) bool {
	if len(b) < 40 || b[0]>>4 != 6 || b[6] == unix.IPPROTO_UDP || b[6] == unix.IPPROTO_TCP {
		return true
	}
	ip, ok := decodeIP(b, 0)
	if !ok {
		return true // counted as malformed
	}
	for _, p := range ports {
		if ip.sport == p || ip.dport == p {
			return true
		}
	}
	return false
}

// Capture listens on ifname and serves g until ctx ends, pausing while the link is down.
func Capture(ctx context.Context, ifname string, ports []uint16, g *Guard) error {
	cp, err := Listen(ifname, ports)
	if err != nil {
		return err
	}
	return cp.Serve(ctx, g)
}

// captureEvent tells that capture on an interface paused or resumed.
func (g *Guard) captureEvent(ifname string, sev events.Severity, msg string) {
	if sev == events.Info {
		g.o.Log.Info("sipguard: "+msg, "interface", ifname)
	} else {
		g.o.Log.Warn("sipguard: "+msg, "interface", ifname)
	}
	g.o.Bus.Publish(events.Event{Kind: "sipguard.capture", Severity: sev, Source: "sipguard", Message: msg,
		Fields: map[string]string{"interface": ifname}})
}
