package wan

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/bind"
)

// TrunkStatus is what the SIP OPTIONS check of one trunk found.
type TrunkStatus struct {
	Name       string        `json:"name"`
	Target     string        `json:"target"`
	State      State         `json:"state"` // unknown, up, down
	ConsecLost int           `json:"consec_lost"`
	RTT        time.Duration `json:"rtt_ns"`
	Via        string        `json:"via,omitempty"` // the uplink the last check left through
	Since      time.Time     `json:"since"`
}

// SIPOptions sends one SIP OPTIONS over UDP from src, leaving through dev, and waits for any
// response to it (the trunk checks, and the page's diagnostics). SIP is a text protocol and
// an OPTIONS ping is a handful of lines, so it is written here rather than pulling in a SIP
// stack.
func SIPOptions(ctx context.Context, dev string, src netip.Addr, to netip.AddrPort, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lc := net.ListenConfig{Control: bind.Device(dev)}
	pc, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort(ipString(src), "0"))
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = pc.SetDeadline(dl)
	}
	local := pc.LocalAddr().(*net.UDPAddr)
	host := ipString(src)
	callID := fmt.Sprintf("%016x@%s", rand.Uint64(), host)
	branch := fmt.Sprintf("z9hG4bK-%016x", rand.Uint64())
	msg := strings.Join([]string{
		fmt.Sprintf("OPTIONS sip:%s SIP/2.0", to),
		fmt.Sprintf("Via: SIP/2.0/UDP %s:%d;branch=%s;rport", host, local.Port, branch),
		"Max-Forwards: 70",
		fmt.Sprintf("From: <sip:health@%s>;tag=%x", host, rand.Uint32()),
		fmt.Sprintf("To: <sip:%s>", to),
		"Call-ID: " + callID,
		"CSeq: 1 OPTIONS",
		"Accept: application/sdp",
		"User-Agent: officeedge-appliance wan",
		"Content-Length: 0",
		"", "",
	}, "\r\n")
	start := time.Now()
	if _, err := pc.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(to)); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return 0, err
		}
		b := buf[:n]
		if bytes.HasPrefix(b, []byte("SIP/2.0 ")) && bytes.Contains(b, []byte(callID)) {
			return time.Since(start), nil
		}
	}
}
