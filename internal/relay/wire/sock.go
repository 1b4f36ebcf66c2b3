package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// tosEF is DSCP EF (46) in the TOS byte: the outer packets are voice for every router that
// reads DSCP, the box's own shaper included.
const tosEF = 0xb8

// sock is one UDP socket of a bind.
type sock struct {
	c       *net.UDPConn
	rc      syscall.RawConn
	v6      bool // AF_INET6 (dual stack): IPv4 destinations go as mapped addresses
	ifindex int  // the interface it is bound to (0: none)
}

// socketOpts sets what every tunnel socket carries; bindDev is the line's interface ("" for
// none).
type socketOpts struct {
	bindDev  string
	priority uint32 // SO_PRIORITY (0: leave)
	tos      bool   // IP_TOS / IPV6_TCLASS EF
	mark     uint32 // SO_MARK (0: leave)
}

func (o socketOpts) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		f := int(fd)
		if o.bindDev != "" {
			if e := unix.BindToDevice(f, o.bindDev); e != nil {
				serr = fmt.Errorf("bind to %s: %w", o.bindDev, e)
				return
			}
		}
		if o.tos {
			// Before SO_PRIORITY: older kernels derive the priority from the TOS.
			if e := unix.SetsockoptInt(f, unix.IPPROTO_IP, unix.IP_TOS, tosEF); e != nil {
				serr = fmt.Errorf("IP_TOS: %w", e)
				return
			}
			_ = unix.SetsockoptInt(f, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tosEF) // IPv4-only socket: n/a
		}
		if o.priority != 0 {
			if e := unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_PRIORITY, int(o.priority)); e != nil {
				serr = fmt.Errorf("SO_PRIORITY: %w", e)
				return
			}
		}
		if o.mark != 0 {
			if e := unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_MARK, int(o.mark)); e != nil {
				serr = fmt.Errorf("SO_MARK: %w", e)
			}
		}
	})
	return errors.Join(err, serr)
}

// listen opens a UDP socket on addr (a zero Addr: every address, both families) with o, in
// the calling thread's namespace.
func listen(addr netip.Addr, port uint16, o socketOpts) (*sock, error) {
	network, host := "udp", ""
	if addr.IsValid() && !addr.IsUnspecified() {
		host = addr.String()
	} else if addr.Is4() {
		network = "udp4"
	}
	lc := net.ListenConfig{Control: o.control}
	pc, err := lc.ListenPacket(context.Background(), network, net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		return nil, err
	}
	c := pc.(*net.UDPConn)
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	s := &sock{c: c, rc: rc}
	var domain int
	var derr error
	if err := rc.Control(func(fd uintptr) { domain, derr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil || derr != nil {
		c.Close()
		return nil, errors.Join(err, derr)
	}
	s.v6 = domain == unix.AF_INET6
	return s, nil
}

// port is the socket's local port.
func (s *sock) port() uint16 { return uint16(s.c.LocalAddr().(*net.UDPAddr).Port) }

// send writes b to dst without ever waiting: a full socket buffer (a line whose queue is
// stuck) drops this packet instead of stalling WireGuard's send path. Hand-written because
// net.UDPConn's writes park the goroutine until the socket is writable.
func (s *sock) send(b []byte, dst netip.AddrPort) error {
	var sa unix.Sockaddr
	a := dst.Addr()
	if s.v6 {
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: a.As16()}
	} else {
		if !a.Unmap().Is4() {
			return fmt.Errorf("wire: send to %s from an IPv4 socket", dst)
		}
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: a.Unmap().As4()}
	}
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT, sa)
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

// setMark applies SO_MARK to an open socket.
func (s *sock) setMark(mark uint32) error {
	var serr error
	err := s.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)) })
	return errors.Join(err, serr)
}

// processNS is the namespace the process started in, taken while package initialisation
// runs on the main thread (later, any thread may be in a test's lab namespace, even the main
// one).
var processNS, _ = netns.Get()

// callerNS returns a handle on the calling thread's network namespace when it is not the
// process's own (a test building a bind inside a lab namespace), else netns.None(): sockets
// a bind opens later, from other goroutines, are opened there.
func callerNS() netns.NsHandle {
	cur, err := netns.Get()
	if err != nil {
		return netns.None()
	}
	if cur.Equal(processNS) {
		cur.Close()
		return netns.None()
	}
	return cur
}

// inNS runs fn on a thread in ns (directly when ns is not open).
func inNS(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, switched to another namespace, is retired with this
		// goroutine instead of going back to the scheduler (as sipguard's capture does).
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("wire: enter namespace: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}
