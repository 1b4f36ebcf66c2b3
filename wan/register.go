package wan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/events"
)

// LongRegistration is the registration interval above which the status warns: after a
// failover the trunk keeps sending inbound calls to the old address until the PBX registers
// again, so this is how long the office may be unreachable for calls.
const LongRegistration = 5 * time.Minute

// Registration is what the PBX's last REGISTER leaving through an uplink said.
type Registration struct {
	// Interval is the expiry the PBX asked for (Expires header or the Contact's expires
	// parameter): it registers again within it.
	Interval  time.Duration `json:"interval_ns"`
	Registrar string        `json:"registrar"`
	Via       Role          `json:"via"`
	Seen      time.Time     `json:"seen"`
	Warning   string        `json:"warning,omitempty"`
}

// registerFilter passes outgoing IPv4 UDP packets whose payload starts with "REGI" (a SIP
// REGISTER), first fragments only: the uplink's other traffic is never copied to user space.
// (Outgoing packets reach only ETH_P_ALL sockets, hence the protocol check here.)
var registerFilter = func() []bpf.RawInstruction {
	p, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipFalse: 10},
		bpf.LoadExtension{Num: bpf.ExtProto},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipFalse: 8},
		bpf.LoadAbsolute{Off: 9, Size: 1}, // IP protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_UDP, SkipFalse: 6},
		bpf.LoadAbsolute{Off: 6, Size: 2}, // fragment offset
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 4},
		bpf.LoadMemShift{Off: 0},                                       // X = IP header length
		bpf.LoadIndirect{Off: 8, Size: 4},                              // first payload word
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x52454749, SkipFalse: 1}, // "REGI"
		bpf.RetConstant{Val: 4096},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err)
	}
	return p
}()

// watchRegisters reads the REGISTERs that leave through uplink u (source: its address, after
// the masquerade) and records the interval they ask for. A REGISTER is a few lines of text,
// so the two headers needed are read here rather than with a SIP stack. SIP over TCP or TLS is
// not seen. It reopens its socket when the link is made again.
func (s *Service) watchRegisters(ctx context.Context, u *uplink) {
	buf := make([]byte, 4096)
	said := ""
	for ctx.Err() == nil {
		ifi, err := net.InterfaceByName(u.cfg.Interface)
		if err != nil {
			sleep(ctx, 2*time.Second)
			continue
		}
		c, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_ALL, &packet.Config{Filter: registerFilter})
		if err != nil {
			if err.Error() != said { // once, not every retry
				said = err.Error()
				s.log.Warn("wan: cannot watch the PBX's REGISTERs: its registration interval is not shown", "interface", ifi.Name, "err", err)
			}
			sleep(ctx, 10*time.Second)
			continue
		}
		for ctx.Err() == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := c.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if cur, err := net.InterfaceByName(ifi.Name); err != nil || cur.Index != ifi.Index {
					break // the link went or was made again
				}
				continue
			}
			if err != nil {
				break
			}
			s.register(u, buf[:n], time.Now())
		}
		c.Close()
	}
}

// register records one captured REGISTER if it left through u.
func (s *Service) register(u *uplink, pkt []byte, now time.Time) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return
	}
	ihl := int(pkt[0]&0xf) * 4
	if len(pkt) < ihl+8 {
		return
	}
	src, _ := netip.AddrFromSlice(pkt[12:16])
	dst, _ := netip.AddrFromSlice(pkt[16:20])
	dport := uint16(pkt[ihl+2])<<8 | uint16(pkt[ihl+3])
	exp, ok := registerExpiry(pkt[ihl+8:])
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if src != u.addr {
		return // coming in to the office, not the PBX's
	}
	r := &Registration{Interval: exp, Registrar: netip.AddrPortFrom(dst, dport).String(), Via: u.role, Seen: now}
	if exp > LongRegistration {
		r.Warning = fmt.Sprintf("the PBX registers for %s: after a failover, inbound calls reach the office only after its next REGISTER, up to %s later; set its registration interval to %s or less",
			exp, exp, LongRegistration)
	}
	if s.reg == nil || s.reg.Interval != r.Interval {
		// An event too: the status page shows the newest one (and its warning).
		e := events.Event{Time: now, Kind: "wan.registration", Severity: events.Info,
			Message: fmt.Sprintf("the PBX registers every %s or less with %s: inbound calls reach the office again within that after a failover", exp, r.Registrar),
			Fields:  map[string]string{"interval": exp.String(), "registrar": r.Registrar, "via": string(u.role)}}
		if r.Warning != "" {
			e.Severity, e.Message = events.Warn, r.Warning
		}
		s.publish(e)
	}
	s.reg = r
}

// registerExpiry reads the expiry a REGISTER asks for: the Contact's expires parameter if
// there is one, else the Expires header, else the default of RFC 3261 (3600 s). A
// de-registration (0) is not an interval.
func registerExpiry(msg []byte) (time.Duration, bool) {
	if !bytes.HasPrefix(msg, []byte("REGISTER ")) {
		return 0, false
	}
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	secs := -1
	for _, line := range bytes.Split(head, []byte("\r\n"))[1:] {
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(bytes.ToLower(bytes.TrimSpace(name))) {
		case "contact", "m":
			low := bytes.ToLower(val)
			if i := bytes.Index(low, []byte(";expires=")); i >= 0 {
				if v, ok := leadingInt(low[i+len(";expires="):]); ok {
					return time.Duration(v) * time.Second, v > 0
				}
			}
		case "expires":
			if v, ok := leadingInt(bytes.TrimSpace(val)); ok {
				secs = v
			}
		}
	}
	if secs < 0 {
		secs = 3600
	}
	return time.Duration(secs) * time.Second, secs > 0
}

func leadingInt(b []byte) (int, bool) {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	v, err := strconv.Atoi(string(b[:n]))
	return v, err == nil
}
