package sitelab

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/lab"
)

// Stream is a steady UDP stream from the phone to the trunk (like RTP), with a fixed
// source port so that it is one long-lived conntrack entry.
type Stream struct {
	Rate int // packets per second
	recv *net.UDPConn
	send *net.UDPConn
	mu   sync.Mutex
	got  []Arrival
	seq  uint32
	stop chan struct{}
	wg   sync.WaitGroup
}

// Arrival is one packet the far end received.
type Arrival struct {
	Seq  uint32
	At   time.Time
	From string // the uplink address it came from (after the box's masquerade)
}

// StartStream sends rate packets a second until Close, for at most max.
func StartStream(l *lab.Lab, rate int, max time.Duration) (*Stream, error) {
	recv, err := l.ListenUDP(lab.HostTrunk, lab.Trunk4+":40000")
	if err != nil {
		return nil, err
	}
	send, err := l.DialUDP(lab.HostPhone, lab.Phone4+":40000", lab.Trunk4+":40000")
	if err != nil {
		recv.Close()
		return nil, err
	}
	st := &Stream{Rate: rate, recv: recv, send: send, stop: make(chan struct{})}
	st.wg.Add(2)
	go func() {
		defer st.wg.Done()
		buf := make([]byte, 64)
		for {
			n, from, err := recv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				st.mu.Lock()
				st.got = append(st.got, Arrival{binary.BigEndian.Uint32(buf), time.Now(), from.IP.String()})
				st.mu.Unlock()
			}
		}
	}()
	go func() {
		defer st.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		end := time.After(max)
		buf := make([]byte, 160) // a G.711 20 ms frame
		for {
			select {
			case <-st.stop:
				return
			case <-end:
				return
			case <-tick.C:
				st.mu.Lock()
				st.seq++
				binary.BigEndian.PutUint32(buf, st.seq)
				st.mu.Unlock()
				_, _ = send.Write(buf) // errors (no route for a moment) are losses
			}
		}
	}()
	return st, nil
}

// Sent is the last sequence number sent.
func (st *Stream) Sent() uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.seq
}

// ArrivedFromSince counts packets from addr with sequence numbers above seq.
func (st *Stream) ArrivedFromSince(addr string, seq uint32) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for _, a := range st.got {
		if a.Seq > seq && a.From == addr {
			n++
		}
	}
	return n
}

// Lost counts the packets numbered (from, to] that never arrived.
func (st *Stream) Lost(from, to uint32) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	seen := map[uint32]bool{}
	for _, a := range st.got {
		if a.Seq > from && a.Seq <= to {
			seen[a.Seq] = true
		}
	}
	return int(to-from) - len(seen)
}

// Close stops the stream.
func (st *Stream) Close() {
	select {
	case <-st.stop:
	default:
		close(st.stop)
	}
	st.send.Close()
	st.recv.Close()
	st.wg.Wait()
}
