package calls

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Filter is the in-kernel classic BPF program for a cooked packet socket: it passes only
// first fragments of UDP to or from one of the PBX's addresses whose PBX-side port is
// sip or in lo..hi (RTP, and hi+1 for the last port's RTCP; lo == 0: any port), so the
// kernel copies nothing else (the PBX's backups, web, DNS) to user space.
func Filter(pbx []netip.Addr, sip, lo, hi uint16) ([]bpf.RawInstruction, error) {
	var p prog
	p.emit(bpf.LoadAbsolute{Off: 0, Size: 1})
	p.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	p.jeq(0x40, "v4")
	p.jeq(0x60, "v6")
	p.ja("drop")

	p.label("v4")
	p.emit(bpf.LoadAbsolute{Off: 6, Size: 2})
	p.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x1fff})
	p.jeq(0, "v4udp")
	p.ja("drop")
	p.label("v4udp")
	p.emit(bpf.LoadAbsolute{Off: 9, Size: 1})
	p.jeq(unix.IPPROTO_UDP, "v4addr")
	p.ja("drop")
	p.label("v4addr")
	p.emit(bpf.LoadMemShift{Off: 0})
	for _, a := range pbx {
		if a.Is4() {
			v := a.As4()
			p.emit(bpf.LoadAbsolute{Off: 12, Size: 4})
			p.jeq(uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]), "v4src")
			p.emit(bpf.LoadAbsolute{Off: 16, Size: 4})
			p.jeq(uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]), "v4dst")
		}
	}
	p.ja("drop")
	p.label("v4src")
	p.emit(bpf.LoadIndirect{Off: 0, Size: 2})
	p.ja("port")
	p.label("v4dst")
	p.emit(bpf.LoadIndirect{Off: 2, Size: 2})
	p.ja("port")

	// IPv6 with extension headers is not followed: no phone or PBX sends media that way.
	p.label("v6")
	p.emit(bpf.LoadAbsolute{Off: 6, Size: 1})
	p.jeq(unix.IPPROTO_UDP, "v6addr")
	p.ja("drop")
	p.label("v6addr")
	n := 0
	for _, a := range pbx {
		if !a.Is6() || a.Is4In6() {
			continue
		}
		b := a.As16()
		for _, side := range []struct {
			off  uint32
			then string
		}{{8, "v6src"}, {24, "v6dst"}} {
			n++
			next := fmt.Sprintf("v6next%d", n)
			for w := 0; w < 4; w++ {
				word := uint32(b[4*w])<<24 | uint32(b[4*w+1])<<16 | uint32(b[4*w+2])<<8 | uint32(b[4*w+3])
				p.emit(bpf.LoadAbsolute{Off: side.off + uint32(4*w), Size: 4})
				p.jne(word, next)
			}
			p.ja(side.then)
			p.label(next)
		}
	}
	p.ja("drop")
	p.label("v6src")
	p.emit(bpf.LoadAbsolute{Off: 40, Size: 2})
	p.ja("port")
	p.label("v6dst")
	p.emit(bpf.LoadAbsolute{Off: 42, Size: 2})
	p.ja("port")

	p.label("port")
	p.jeq(uint32(sip), "accept")
	if lo != 0 {
		p.jlt(uint32(lo), "drop")
		p.jgt(uint32(hi)+1, "drop")
	}
	p.label("accept")
	p.emit(bpf.RetConstant{Val: 65535})
	p.label("drop")
	p.emit(bpf.RetConstant{Val: 0})
	return p.assemble()
}

// prog is a classic BPF program with forward jumps to labels, resolved at the end.
type prog struct {
	ins    []bpf.Instruction
	fix    []fixup
	labels map[string]int
}

type fixup struct {
	at    int
	label string
}

func (p *prog) emit(i bpf.Instruction) int { p.ins = append(p.ins, i); return len(p.ins) - 1 }

func (p *prog) label(l string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[l] = len(p.ins)
}

// jump adds a conditional jump to l when cond holds (it falls through otherwise).
func (p *prog) jump(cond bpf.JumpTest, v uint32, l string) {
	p.fix = append(p.fix, fixup{p.emit(bpf.JumpIf{Cond: cond, Val: v}), l})
}

func (p *prog) jeq(v uint32, l string) { p.jump(bpf.JumpEqual, v, l) }
func (p *prog) jne(v uint32, l string) { p.jump(bpf.JumpNotEqual, v, l) }
func (p *prog) jlt(v uint32, l string) { p.jump(bpf.JumpLessThan, v, l) }
func (p *prog) jgt(v uint32, l string) { p.jump(bpf.JumpGreaterThan, v, l) }
func (p *prog) ja(l string)            { p.fix = append(p.fix, fixup{p.emit(bpf.Jump{}), l}) }

func (p *prog) assemble() ([]bpf.RawInstruction, error) {
	for _, f := range p.fix {
		to, ok := p.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("calls: bpf label %s", f.label)
		}
		skip := to - f.at - 1
		switch i := p.ins[f.at].(type) {
		case bpf.JumpIf:
			if skip < 0 || skip > 255 {
				return nil, fmt.Errorf("calls: bpf program too long")
			}
			i.SkipTrue = uint8(skip)
			p.ins[f.at] = i
		case bpf.Jump:
			i.Skip = uint32(skip)
			p.ins[f.at] = i
		}
	}
	return bpf.Assemble(p.ins)
}

// linkPoll is how often a capture whose interface went away looks for it again.
const linkPoll = 200 * time.Millisecond

// capture reads packets on ifname with prog attached and hands each to t until ctx ends.
// The interface going down or away pauses it until it is back; other errors end it.
func capture(ctx context.Context, ifname string, prog []bpf.RawInstruction, t *Tracker, drops func(uint64)) error {
	buf := make([]byte, 65536)
	for {
		c, err := open(ifname, prog)
		if err != nil {
			if !gone(err) {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(linkPoll):
				continue
			}
		}
		err = serve(ctx, c, buf, t, drops)
		c.Close()
		if ctx.Err() != nil {
			return nil
		}
		if !gone(err) {
			return fmt.Errorf("calls: capture on %s: %w", ifname, err)
		}
	}
}

func open(ifname string, prog []bpf.RawInstruction) (*packet.Conn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("calls: capture on %s: %w", ifname, unix.ENODEV)
	}
	c, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_ALL, nil)
	if err != nil {
		return nil, fmt.Errorf("calls: capture on %s: %w", ifname, err)
	}
	if err := c.SetBPF(prog); err != nil {
		c.Close()
		return nil, fmt.Errorf("calls: capture on %s: filter: %w", ifname, err)
	}
	return c, nil
}

// serve reads until ctx ends (nil) or reading fails.
func serve(ctx context.Context, c *packet.Conn, buf []byte, t *Tracker, drops func(uint64)) error {
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	polled := time.Now()
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		now := time.Now()
		if now.Sub(polled) >= time.Second {
			// Kernel drops on a full socket buffer would show as loss: they are counted apart.
			polled = now
			if st, err := c.Stats(); err == nil && st.Drops > 0 {
				drops(uint64(st.Drops))
			}
		}
		t.Handle(now, buf[:n])
	}
}

// gone says whether an error means the interface is down or away.
func gone(err error) bool {
	return errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO)
}
