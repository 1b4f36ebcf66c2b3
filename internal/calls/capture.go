package calls

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	capsock "github.com/officeedge/appliance/internal/capture"
)

// Filter is the in-kernel classic BPF program for a cooked packet socket: it passes only
// first fragments of UDP to or from one of the PBX's addresses whose PBX-side port is
// sip or in lo..hi (RTP, and hi+1 for the last port's RTCP; lo == 0: any port), so the
// kernel copies nothing else (the PBX's backups, web, DNS) to user space.
func Filter(pbx []netip.Addr, sip, lo, hi uint16) ([]bpf.RawInstruction, error) {
	var p capsock.Prog
	p.IPStart()
	p.JEq(unix.IPPROTO_UDP, "v4addr")
	p.JA("drop")
	p.Label("v4addr")
	p.Emit(bpf.LoadMemShift{Off: 0})
	for _, a := range pbx {
		if a.Is4() {
			v := a.As4()
			for _, side := range []struct {
				off  uint32
				then string
			}{{12, "v4src"}, {16, "v4dst"}} {
				p.Emit(bpf.LoadAbsolute{Off: side.off, Size: 4})
				p.JEq(binary.BigEndian.Uint32(v[:]), side.then)
			}
		}
	}
	pbxPort(&p, "v4", bpf.LoadIndirect{Off: 0, Size: 2}, bpf.LoadIndirect{Off: 2, Size: 2})

	// IPv6 with extension headers is not followed: no phone or PBX sends media that way.
	p.Label("v6")
	p.Emit(bpf.LoadAbsolute{Off: 6, Size: 1})
	p.JEq(unix.IPPROTO_UDP, "v6addr")
	p.JA("drop")
	p.Label("v6addr")
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
			for w := uint32(0); w < 4; w++ {
				p.Emit(bpf.LoadAbsolute{Off: side.off + 4*w, Size: 4})
				p.JNe(binary.BigEndian.Uint32(b[4*w:]), next)
			}
			p.JA(side.then)
			p.Label(next)
		}
	}
	pbxPort(&p, "v6", bpf.LoadAbsolute{Off: 40, Size: 2}, bpf.LoadAbsolute{Off: 42, Size: 2})

	p.Label("port")
	p.JEq(uint32(sip), "accept")
	if lo != 0 {
		p.JLt(uint32(lo), "drop")
		p.JGt(uint32(hi)+1, "drop")
	}
	p.Label("accept")
	p.Emit(bpf.RetConstant{Val: 65535})
	p.Label("drop")
	p.Emit(bpf.RetConstant{Val: 0})
	raw, err := p.Assemble()
	if err != nil {
		return nil, fmt.Errorf("calls: %w", err)
	}
	return raw, nil
}

// pbxPort ends an address family's address checks (none matched: drop), then loads the
// PBX-side port at ip+"src" (the PBX sent it: the source port) and ip+"dst" (the
// destination port) and goes on to the port checks.
func pbxPort(p *capsock.Prog, ip string, src, dst bpf.Instruction) {
	p.JA("drop")
	p.Label(ip + "src")
	p.Emit(src)
	p.JA("port")
	p.Label(ip + "dst")
	p.Emit(dst)
	p.JA("port")
}

// capture reads packets on ifname with prog attached and hands each to t until ctx ends.
// The interface going down or away pauses it until it is back; other errors end it.
func capture(ctx context.Context, ifname string, prog []bpf.RawInstruction, t *Tracker, drops func(uint64)) error {
	buf := make([]byte, 65536)
	for {
		c, err := capsock.Open(ifname, prog)
		if err != nil {
			if !gone(err) {
				return fmt.Errorf("calls: %w", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(capsock.LinkPoll):
				continue
			}
		}
		err = capsock.Read(ctx, c, buf, t.Handle, drops)
		c.Close()
		if ctx.Err() != nil {
			return nil
		}
		if !gone(err) {
			return fmt.Errorf("calls: capture on %s: %w", ifname, err)
		}
	}
}

// gone says whether an error means the interface is down or away.
func gone(err error) bool {
	_, down := capsock.LinkGone(err)
	return down
}
