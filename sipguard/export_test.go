package sipguard

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// LoggedRequest is one SIP request a host received.
type LoggedRequest struct {
	At   time.Time
	Src  netip.Addr
	Auth bool // it carried credentials
}

// RequestLog records the SIP requests to dst that a capture socket sees: on the PBX's own
// interface, what actually reached the PBX (for the benchmarks and lab tests).
type RequestLog struct {
	mu   sync.Mutex
	reqs []LoggedRequest
}

// LogRequests reads cp until ctx ends, recording the requests to dst (one per datagram or
// segment: enough for UDP crackers).
func LogRequests(ctx context.Context, cp *Capturer, dst netip.Addr) *RequestLog {
	r := &RequestLog{}
	c := cp.c
	context.AfterFunc(ctx, func() { _ = c.Close() })
	go func() {
		buf := make([]byte, 65536)
		var m Msg
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			ip, ok := decodeIP(buf[:n], 0)
			if !ok || ip.dst != dst || len(ip.payload) == 0 {
				continue
			}
			if err := Parse(ip.payload, &m); err != nil && m.Method == nil || !m.Request {
				continue
			}
			r.mu.Lock()
			r.reqs = append(r.reqs, LoggedRequest{At: time.Now(), Src: ip.src, Auth: m.Auth})
			r.mu.Unlock()
		}
	}()
	return r
}

// From lists the requests recorded from src.
func (r *RequestLog) From(src netip.Addr) []LoggedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []LoggedRequest
	for _, q := range r.reqs {
		if q.Src == src {
			out = append(out, q)
		}
	}
	return out
}

// Beyond counts the requests after the nth credentialed one (-1: fewer than n came).
func Beyond(reqs []LoggedRequest, n int) int {
	for i, q := range reqs {
		if q.Auth {
			if n--; n == 0 {
				return len(reqs) - i - 1
			}
		}
	}
	return -1
}
