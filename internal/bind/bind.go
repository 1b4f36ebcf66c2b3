// Package bind makes sockets leave through one interface, whatever the routing table prefers.
package bind

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// Device is a net.Dialer or net.ListenConfig Control that binds the socket to dev
// (SO_BINDTODEVICE): a probe or a diagnostic of the standby line must test that line, and a
// backup upload must not wander onto the metered modem.
func Device(dev string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), dev) })
		return errors.Join(err, serr)
	}
}
