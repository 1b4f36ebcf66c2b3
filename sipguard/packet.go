package sipguard

import (
	"errors"
	"net/netip"
	"strings"
	"time"
)

// Handle analyses one raw IP packet (IPv4 or IPv6) seen at time now. It never panics on
// malformed input and does not allocate unless a detector fires.
func (g *Guard) Handle(now time.Time, pkt []byte) {
	ip, ok := decodeIP(pkt, g.o.TLSPort)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.Stats.Packets++
	if !ok {
		g.Stats.Malformed++
		return
	}
	if ip.tlsSYN {
		g.Stats.TLS++
		if f := g.eng.tlsConn(ip.src, now.UnixNano()); f.Kind != KindNone {
			g.finding(now, f, nil)
		}
		return
	}
	if ip.tcp {
		g.handleTCP(now, &ip, pkt)
		return
	}
	if len(ip.payload) == 0 {
		return
	}
	g.ring.add(ip.src, ip.dst, now, pkt)
	g.datagram(now, &ip, ip.payload)
}

// datagram parses and observes the SIP message of a UDP datagram (TCP: handleTCP).
func (g *Guard) datagram(now time.Time, ip *ipInfo, b []byte) {
	if err := Parse(b, &g.msg); err != nil && !errors.Is(err, ErrTruncated) {
		g.Stats.Malformed++
		return
	}
	g.Stats.SIP++
	if f := g.eng.Observe(ip.src, ip.dst, now, &g.msg); f.Kind != KindNone {
		g.finding(now, f, b)
	}
}

// finding decides what to do and queues the slow part (kernel, disk) for the worker.
func (g *Guard) finding(now time.Time, f Finding, payload []byte) {
	if f.Kind == KindHold {
		// Not a verdict: a head start on one, for the worker that only places holds.
		if g.eng.local(f.Actor) || g.eng.trusted(f.Actor) {
			return
		}
		select {
		case g.holds <- hold{f.Actor, f.For}:
			g.Stats.Holds++
		default: // the verdict still follows the PBX's answer
		}
		return
	}
	g.Stats.Findings++
	if int(f.Kind) < len(g.Stats.Detections) {
		g.Stats.Detections[f.Kind]++
	}
	marked := false
	if len(g.warned) > 10000 {
		clear(g.warned) // forged auth names or sources must not grow it without bound
	}
	switch {
	case f.Kind == KindSiteUser:
		// One user at a site: an alert, once per user and site every 10 minutes.
		k := f.Actor.String() + "|user|" + string(f.What)
		if t, done := g.warned[k]; done && now.Sub(t) < 10*time.Minute {
			return
		}
		g.warned[k] = now
	case f.Kind == KindWeakAuth:
		// A weakness is reported once.
		if _, done := g.warned[string(f.What)]; done {
			return
		}
		g.warned[string(f.What)] = now
	case g.eng.local(f.Actor) || g.eng.trusted(f.Actor):
		// Office hosts and trusted peers are never blocked, so they keep being reported:
		// once per call for a toll-fraud attempt (retransmissions of the same INVITE are
		// one attempt), otherwise once per kind every 10 minutes.
		k := f.Actor.String() + "|" + f.Kind.String()
		if f.Kind == KindTollFraud {
			k += "|" + string(g.msg.CallID)
		}
		if t, done := g.warned[k]; done && now.Sub(t) < 10*time.Minute {
			return
		}
		g.warned[k] = now
	default:
		// One action per source: later packets in flight must not queue it again.
		g.eng.MarkDone(f.Actor)
		marked = true
	}
	a := action{f: f, what: printable(f.What), sample: printable(payload), at: now}
	var others []netip.Addr
	if f.Kind == KindDistributed {
		// The extension is under attack from many sources: those that failed on it
		// before it turned hot go too.
		others = g.eng.HotSources(f.What, now)
	}
	a.f.What = nil
	g.queue(a, marked)
	for _, o := range others {
		if o == f.Actor || g.eng.trusted(o) {
			continue
		}
		g.eng.MarkDone(o)
		b := a
		b.f.Actor = o
		b.f.Proof = g.eng.Proven(o, now) // its own proof, not the deciding source's
		g.queue(b, true)
	}
}

func (g *Guard) queue(a action, marked bool) {
	select {
	case g.acts <- a:
	default:
		g.Stats.Dropped++
		g.o.Log.Error("sipguard: action dropped", "err", ErrActionQueueFull, "actor", a.f.Actor)
		if marked {
			g.eng.markDone(a.f.Actor, false) // not acted upon: its next packet may try again
		}
	}
}

func printable(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 32 && r != '\n' && r != '\t' || r == 127 {
			return '.'
		}
		return r
	}, strings.ReplaceAll(string(b), "\r\n", "\n"))
}
