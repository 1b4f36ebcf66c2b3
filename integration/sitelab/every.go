package sitelab

import (
	"net"
	"sync"
	"time"
)

// Every calls f every d from a goroutine of its own, n times at the most (0: until
// stopped), until the returned stop is called; stop may be called again, and returns once
// f's last call has.
func Every(d time.Duration, n int, f func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for i := 0; n == 0 || i < n; i++ {
			select {
			case <-quit:
				return
			case <-tick.C:
				f()
			}
		}
	}()
	return sync.OnceFunc(func() { close(quit); <-done })
}

// ReadUDP hands every datagram c receives (up to size bytes) to got, from a goroutine of
// its own, until reading fails (c closed); the returned channel closes then.
func ReadUDP(c *net.UDPConn, size int, got func(b []byte, from *net.UDPAddr)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, size)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			got(buf[:n], from)
		}
	}()
	return done
}
