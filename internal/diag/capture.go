package diag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Bounds of a capture.
const (
	MaxCapture      = 60 * time.Second
	MaxCaptureBytes = 20 << 20
	snapLen         = 65535
)

// CaptureStats is what a capture wrote.
type CaptureStats struct {
	Packets   int  `json:"packets"`
	Bytes     int  `json:"bytes"`
	Truncated bool `json:"truncated"` // stopped at MaxCaptureBytes
}

// Capture writes what crosses iface (both ways) for d as pcapng to w, stopping early at
// MaxCaptureBytes or when ctx ends. The packet socket has read deadlines (pcapgo's own
// EthernetHandle blocks in recvmsg with none, so a quiet link would hold a capture past its
// end); pcapgo writes the file.
func Capture(ctx context.Context, iface string, d time.Duration, w io.Writer) (CaptureStats, error) {
	var st CaptureStats
	d = min(max(d, time.Second), MaxCapture)
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return st, fmt.Errorf("diag: capture: %w", err)
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
	if err != nil {
		return st, fmt.Errorf("diag: capture on %s: %w", iface, err)
	}
	defer c.Close()
	cw := &countingWriter{w: w}
	ng, err := pcapgo.NewNgWriterInterface(cw, pcapgo.NgInterface{Name: iface, LinkType: layers.LinkTypeEthernet, SnapLength: snapLen},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "officeedge appliance diagnostics"}})
	if err != nil {
		return st, fmt.Errorf("diag: capture: %w", err)
	}
	end := time.Now().Add(d)
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	_ = c.SetReadDeadline(end)
	buf := make([]byte, snapLen)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return st, fmt.Errorf("diag: capture on %s: %w", iface, err)
		}
		if cw.n+n+32 > MaxCaptureBytes {
			st.Truncated = true
			break
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: n, Length: n}
		if err := ng.WritePacket(ci, buf[:n]); err != nil {
			return st, fmt.Errorf("diag: capture: write: %w", err)
		}
		st.Packets++
	}
	if err := ng.Flush(); err != nil {
		return st, fmt.Errorf("diag: capture: write: %w", err)
	}
	st.Bytes = cw.n
	return st, nil
}

type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += n
	return n, err
}
