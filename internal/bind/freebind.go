package bind

import (
	"context"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Freebind is a net.ListenConfig Control that sets IP_FREEBIND: the LAN address may still be
// on its way (the firewall owner sets it; an IPv6 one may be in duplicate address
// detection); the socket takes it as soon as it is there, so a LAN service comes up with the
// box rather than fail because the LAN came up a moment later.
func Freebind(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		if serr == nil {
			// Harmless on IPv4 sockets; IPv6 ones need their own.
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
		}
	}); err != nil {
		return err
	}
	return serr
}

// ListenFree listens on TCP at a (never the wildcard address), with Freebind.
func ListenFree(ctx context.Context, a netip.AddrPort) (net.Listener, error) {
	network := "tcp4"
	if a.Addr().Is6() {
		network = "tcp6"
	}
	lc := net.ListenConfig{Control: Freebind}
	return lc.Listen(ctx, network, a.String())
}
