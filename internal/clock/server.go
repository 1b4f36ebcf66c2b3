package clock

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/officeedge/appliance/internal/perclient"
)

// The SNTP server (RFC 4330, the server side of RFC 5905's packet) is written here: beevik/ntp
// is a client only, and no well-kept Go NTP server library exists. It answers mode-3
// requests with one mode-4 packet and keeps no per-client state but a rate limit.

const (
	ntpEpochOffset = 2208988800 // seconds from 1900 (NTP's era 0) to 1970
	packetLen      = 48
	modeClient     = 3
	modeServer     = 4
	maxStratum     = 15
	precision      = -20 // about a microsecond: what Go's clock reads
)

// Per-client limit: NTP clients poll every 64 s or slower; a burst at boot is 4-8
// packets. More are dropped: an NTP client takes a lost packet in its stride, and a
// kiss-o'-death sent to a flood's spoofed sources would only reflect it.
const (
	clientRate    = 2
	clientBurst   = 8
	clientsKept   = 4096
	reportEvery   = time.Minute
	reportClients = 256
)

// Serve answers SNTP on pc (the LAN addresses, UDP 123) until ctx ends. Clients outside
// clients get nothing. While the clock is untrusted it answers with a kiss-o'-death "INIT"
// (stratum 0, alarm): a phone must not take 1970 from the box. Any LAN device can flood
// it, so it costs one goroutine and one buffer whatever comes: one read loop answering in
// place, a per-client limit, and one log line per flood and minute.
func (c *Clock) Serve(ctx context.Context, pc net.PacketConn, clients []netip.Prefix) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	lim := perclient.New(clientRate, clientBurst, clientsKept)
	over := perclient.NewTally(reportClients)
	tick := time.NewTicker(reportEvery)
	defer tick.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				over.Take().Log(c.o.Log, "sntp: clients over the per-client limit, dropped")
			}
		}
	}()
	buf := make([]byte, 512)
	out := make([]byte, packetLen)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		recv := c.Now()
		ap, err := netip.ParseAddrPort(from.String())
		if err != nil || !inAny(ap.Addr().Unmap(), clients) {
			continue
		}
		if !lim.Allow(ap.Addr()) {
			if over.Add(ap.Addr()) {
				c.o.Log.Warn("sntp: client over the per-client limit, dropping (summary follows)", "client", ap.Addr().Unmap().String())
			}
			continue
		}
		if c.reply(out, buf[:n], recv) {
			_, _ = pc.WriteTo(out, from)
		}
	}
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// reply writes into out (packetLen bytes) the answer to one request; false for anything
// but a client request.
func (c *Clock) reply(out, req []byte, recv time.Time) bool {
	if len(req) < packetLen {
		return false
	}
	vn, mode := (req[0]>>3)&7, req[0]&7
	if mode != modeClient || vn < 1 || vn > 4 {
		return false
	}
	clear(out)
	copy(out[24:32], req[40:48]) // origin: the client's transmit time, so it can match the answer
	out[2] = req[2]              // poll: as the client asked
	p := int8(precision)
	out[3] = byte(p)
	c.mu.Lock()
	stratum := min(c.st.Stratum+1, maxStratum)
	ref, delay, disp, id := c.st.LastSync, c.rootDelay, c.rootDisp, c.refID
	c.mu.Unlock()
	if !c.Trusted() || ref.IsZero() {
		// Untrusted, or trusted from the saved time but not synced since the start: no
		// time a client should take (stratum, reference and dispersion are unknown).
		out[0] = 3<<6 | vn<<3 | modeServer // leap "alarm": not synchronised
		copy(out[12:16], "INIT")
		// No time of ours (it may read 1970): the client's own, so that strict clients
		// still read the packet, as a kiss-o'-death.
		copy(out[32:40], req[40:48])
		copy(out[40:48], req[40:48])
		return true
	}
	// The dispersion grows as the clock drifts since the last sync (15 ppm, RFC 5905's PHI).
	disp += time.Duration(float64(recv.Sub(ref)) * 15e-6)
	out[0] = vn<<3 | modeServer
	out[1] = stratum
	binary.BigEndian.PutUint32(out[4:8], short(delay))
	binary.BigEndian.PutUint32(out[8:12], short(disp))
	binary.BigEndian.PutUint32(out[12:16], id)
	binary.BigEndian.PutUint64(out[16:24], timestamp(ref))
	binary.BigEndian.PutUint64(out[32:40], timestamp(recv))
	binary.BigEndian.PutUint64(out[40:48], timestamp(c.Now()))
	return true
}

// timestamp is t in NTP's 64-bit format: seconds since 1900 and a binary fraction.
func timestamp(t time.Time) uint64 {
	sec := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// short is d in NTP's 32-bit format: 16 bits of seconds, 16 of fraction.
func short(d time.Duration) uint32 {
	if d < 0 {
		d = 0
	}
	return uint32(min(uint64(d)<<16/uint64(time.Second), 1<<32-1))
}

// refIDOf is what a server of stratum 2 and more puts in its reference id: its upstream's
// IPv4 address, or the first four bytes of the MD5 of its IPv6 address (RFC 5905).
func refIDOf(upstream netip.Addr) uint32 {
	if upstream.Is4() {
		return binary.BigEndian.Uint32(upstream.AsSlice())
	}
	sum := md5.Sum(upstream.AsSlice())
	return binary.BigEndian.Uint32(sum[:4])
}
