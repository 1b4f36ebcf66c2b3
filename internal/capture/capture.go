// Package capture is the cooked AF_PACKET socket with a BPF filter that sipguard and the call-quality meter read.
package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// LinkPoll is how often a capture whose interface is down or away looks for it again.
const LinkPoll = 200 * time.Millisecond

// StatsPoll is how often the socket's drop counter is read while packets arrive.
const StatsPoll = time.Second

// Open opens a cooked (SOCK_DGRAM) packet socket on ifname, in the calling thread's
// namespace, with prog attached. A missing interface is unix.ENODEV (LinkGone).
func Open(ifname string, prog []bpf.RawInstruction) (*packet.Conn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w: %w", ifname, unix.ENODEV, err)
	}
	c, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_ALL, nil)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", ifname, err)
	}
	if err := c.SetBPF(prog); err != nil {
		c.Close()
		return nil, fmt.Errorf("capture on %s: filter: %w", ifname, err)
	}
	return c, nil
}

// Read hands every packet read from c into buf to handle until ctx ends (nil) or reading
// fails. Every StatsPoll it reads the packets the kernel dropped on a full socket buffer
// (PACKET_STATISTICS, reset by reading) and passes a non-zero count to drops: under a
// flood they would otherwise show as loss or missed detections.
func Read(ctx context.Context, c *packet.Conn, buf []byte, handle func(now time.Time, b []byte), drops func(uint64)) error {
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
		if now.Sub(polled) >= StatsPoll {
			polled = now
			if d := Drops(c); d > 0 {
				drops(d)
			}
		}
		handle(now, buf[:n])
	}
}

// Drops is the number of packets the kernel dropped on c since the last look (0 when unreadable).
func Drops(c *packet.Conn) uint64 {
	st, err := c.Stats()
	if err != nil {
		return 0
	}
	return uint64(st.Drops)
}

// LinkGone says whether an error means the interface went down or away, and which.
func LinkGone(err error) (string, bool) {
	switch {
	case errors.Is(err, unix.ENETDOWN):
		return "link down", true
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return "interface gone", true
	}
	return "", false
}
