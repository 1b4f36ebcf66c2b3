// Package udpbuf gives a LAN service's UDP socket a receive buffer that rides out a burst.
package udpbuf

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// size is the receive buffer: a burst of a few thousand packets (a Wi-Fi's devices waking
// at once, or a flood being read in batches) waits in it instead of being dropped by the
// kernel with the office's own packets.
const size = 4 << 20

// Grow gives pc a receive buffer of size bytes, past the system's default limit when the
// daemon may (root); a failure leaves the default.
func Grow(pc net.PacketConn) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
	})
}
