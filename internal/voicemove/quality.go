package voicemove

import (
	"slices"
	"time"

	"github.com/officeedge/appliance/wan"
)

// CallSample is one active call on the watched line as package calls counts it: the media
// towards the PBX (what a flood on the downlink hurts), since the call began.
type CallSample struct {
	ID       string
	Expected uint64 // packets the sequence numbers say were sent
	Lost     uint64
	Jitter   time.Duration // RFC 3550 interarrival jitter now
}

// callQuality turns the calls' running counts into their loss over the last second or so.
type callQuality struct {
	base   map[string]CallSample // counts at baseAt, by call
	baseAt time.Time
	last   Quality
	lastAt time.Time
}

// minPackets is how many expected packets a loss figure needs (one call's second at 50/s).
const minPackets = 50

// qualityFor is how long a figure stands for the calls while too few packets came since.
const qualityFor = 3 * time.Second

// update takes the active calls now and returns their quality (Known false when no call
// carries enough media).
func (q *callQuality) update(calls []CallSample, now time.Time) Quality {
	var exp, lost uint64
	var jitter time.Duration
	for _, c := range calls {
		jitter = max(jitter, c.Jitter)
		b, ok := q.base[c.ID]
		if !ok || c.Expected < b.Expected || c.Lost < b.Lost {
			continue // new here, or counted afresh: from the next figure on
		}
		exp += c.Expected - b.Expected
		lost += min(c.Lost-b.Lost, c.Expected-b.Expected)
	}
	if exp >= minPackets || now.Sub(q.baseAt) >= qualityFor || len(calls) != len(q.base) {
		// A new figure, and a new base with exactly the calls of now (bounded by them).
		if exp > 0 {
			q.last, q.lastAt = Quality{Known: true, Source: "calls", Loss: 100 * float64(lost) / float64(exp), Jitter: jitter}, now
		}
		q.base, q.baseAt = make(map[string]CallSample, len(calls)), now
		for _, c := range calls {
			q.base[c.ID] = c
		}
	}
	if len(calls) == 0 || now.Sub(q.lastAt) >= qualityFor {
		return Quality{}
	}
	return q.last
}

// probeQuality is the line's own figures while no call is measured: the wan probes' loss
// and their round trip above the line's calm one (a flood fills the ISP's queue in front of
// the line: the probes wait in it like the calls' media).
type probeQuality struct {
	rtts []time.Duration // the median round trip of each look, the last calmLooks
}

// calmLooks is how many looks the calm round trip is the least of (a minute at 2 a second).
const calmLooks = 120

func (p *probeQuality) update(u wan.UplinkStatus) Quality {
	var loss float64
	var rtts []time.Duration
	for _, t := range u.Targets {
		if t.Sent >= 5 {
			loss = max(loss, float64(t.LossPct))
		}
		if t.Sent > t.Lost && t.RTT > 0 {
			rtts = append(rtts, t.RTT)
		}
	}
	if len(rtts) == 0 {
		return Quality{Known: loss > 0, Source: "probes", Loss: loss}
	}
	slices.Sort(rtts)
	rtt := rtts[len(rtts)/2]
	p.rtts = append(p.rtts, rtt)
	if len(p.rtts) > calmLooks {
		p.rtts = p.rtts[len(p.rtts)-calmLooks:]
	}
	return Quality{Known: true, Source: "probes", Loss: loss, Jitter: rtt - slices.Min(p.rtts)}
}

// reset forgets the calm round trip (another line is watched now).
func (p *probeQuality) reset() { p.rtts = p.rtts[:0] }
