package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/lab"
)

// inbound is the trunk calling the office every 100 ms at the relay's address (its SIP port,
// which the relay forwards to the box, the box to the PBX) and the PBX's SIP port recording
// when each INVITE arrives. Without a relay a trunk calls where the PBX last registered from;
// with it, the office's address never changes, so no registration is waited for.
type inbound struct {
	pbx, trunk *net.UDPConn
	mu         sync.Mutex
	arrivals   []time.Time // bounded: the last maxArrivals
	stop       chan struct{}
	wg         sync.WaitGroup
}

const maxArrivals = 1000

func startInbound(l *lab.Lab) (*inbound, error) {
	pbx, err := l.ListenUDP(lab.HostPBX, lab.PBX4+":5060")
	if err != nil {
		return nil, err
	}
	// The trunk's OPTIONS responder holds its port 5060; the calls leave from 5071.
	trunk, err := l.DialUDP(lab.HostTrunk, lab.Trunk4+":5071", lab.Relay4+":5060")
	if err != nil {
		pbx.Close()
		return nil, err
	}
	in := &inbound{pbx: pbx, trunk: trunk, stop: make(chan struct{})}
	in.wg.Add(2)
	go func() {
		defer in.wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := pbx.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if bytes.HasPrefix(buf[:n], []byte("INVITE ")) {
				in.mu.Lock()
				if len(in.arrivals) == maxArrivals {
					in.arrivals = in.arrivals[1:]
				}
				in.arrivals = append(in.arrivals, time.Now())
				in.mu.Unlock()
			}
		}
	}()
	go func() {
		defer in.wg.Done()
		for i := 0; ; i++ {
			msg := fmt.Sprintf("INVITE sip:office@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:5071;branch=z9hG4bK-rl%d\r\nMax-Forwards: 70\r\n"+
				"From: <sip:caller@%s>;tag=rl%d\r\nTo: <sip:office@%s>\r\nCall-ID: relay-in-%d@%s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
				lab.Relay4, lab.Trunk4, i, lab.Trunk4, i, lab.Relay4, i, lab.Trunk4)
			_, _ = trunk.Write([]byte(msg)) // errors (ICMP of a moment) are misses
			select {
			case <-in.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return in, nil
}

// wait waits up to d for the first INVITE to reach the PBX after t, and returns when it did.
func (in *inbound) wait(after time.Time, d time.Duration) (time.Time, error) {
	deadline := time.Now().Add(d)
	for {
		in.mu.Lock()
		for _, at := range in.arrivals {
			if at.After(after) {
				in.mu.Unlock()
				return at, nil
			}
		}
		in.mu.Unlock()
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no inbound INVITE reached the PBX within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (in *inbound) Close() {
	close(in.stop)
	in.pbx.Close()
	in.trunk.Close()
	in.wg.Wait()
}
