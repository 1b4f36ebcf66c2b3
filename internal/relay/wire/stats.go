package wire

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// lossWindow is how many of a line's latest probes its loss is measured over.
const lossWindow = 20

// lossGrace is how long an unanswered probe is pending rather than lost.
const lossGrace = time.Second

// LineStats is one line's view of the relay.
type LineStats struct {
	Name, Interface   string
	Current           bool          // the line carrying the tunnel (SetLine)
	Open              bool          // its socket is open (the interface exists)
	Reachable         bool          // a probe answered within 3 probe intervals
	RTT               time.Duration // of the latest answered probe
	Loss              float64       // 0-1, over the last 20 probes
	LastReply         time.Time
	ProbesSent        uint64
	ProbesAnswered    uint64
	BytesOut, BytesIn uint64 // WireGuard datagrams (probes not counted)
	DuplicateBytesOut uint64 // the part of BytesOut that was a duplicate copy
	SendErrors        uint64 // outer packets lost at the box while this was the current line: no line took them
}

// boxLine is a line's socket, counters and probe state.
type boxLine struct {
	Line
	id    uint8
	s     atomic.Pointer[sock]
	ready chan struct{} // a new socket is in s

	bytesOut, bytesIn, dupOut atomic.Uint64
	sendErrs                  atomic.Uint64
	probeNow                  atomic.Bool
	lastReply                 atomic.Int64 // unix nanoseconds
	interval                  atomic.Int64 // of the latest probe

	mu             sync.Mutex
	ring           [lossWindow]probeSlot
	lastSent       time.Time
	rtt            time.Duration
	sent, answered uint64
	openErr        string // the last socket problem logged ("" once open)
	wasReachable   bool
}

type probeSlot struct {
	seq      uint64
	sent     time.Time
	answered bool
}

// reachable says whether a probe was answered within 3 intervals.
func (l *boxLine) reachable(now time.Time) bool {
	last := l.lastReply.Load()
	return last != 0 && now.UnixNano()-last <= 3*l.interval.Load()
}

func (l *boxLine) probeDue(now time.Time, every time.Duration) bool {
	if l.probeNow.Swap(false) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// A quarter of slack: the ticker that drives probes runs at the same interval.
	return now.Sub(l.lastSent) >= every*3/4
}

// probe sends l's next probe to the relay.
func (b *BoxBind) probe(l *boxLine, now time.Time, every time.Duration, dup bool) {
	so := l.s.Load()
	relay := b.opts.Relay()
	if so == nil || !relay.IsValid() {
		return
	}
	p := probe{kind: kindRequest, line: l.id, seq: b.seq.Add(1), stamp: now.UnixNano(), sender: b.public}
	if dup {
		p.flags |= flagDuplicate
	}
	var buf [probeSize]byte
	p.marshal(buf[:], &b.key)
	l.mu.Lock()
	l.ring[l.sent%lossWindow] = probeSlot{seq: p.seq, sent: now} // seqs are shared by the lines
	l.lastSent = now
	l.sent++
	l.mu.Unlock()
	l.interval.Store(int64(every))
	_ = so.send(buf[:], relay) // a failed send is an unanswered probe
}

// reply takes a probe reply that came in on l.
func (b *BoxBind) reply(l *boxLine, msg []byte, now time.Time) {
	p, err := parse(msg)
	if err != nil || p.kind != kindReply || p.sender != b.opts.RelayPublic || p.line != l.id || !verify(msg, &b.key) {
		b.rejects.add(now)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var slot *probeSlot
	for i := range l.ring {
		if l.ring[i].seq == p.seq {
			slot = &l.ring[i]
		}
	}
	if slot == nil || slot.answered || p.stamp != slot.sent.UnixNano() {
		return // late, duplicated or replayed: nothing new
	}
	slot.answered = true
	l.answered++
	l.rtt = now.Sub(slot.sent)
	l.lastReply.Store(now.UnixNano())
	b.noteEpoch(p.epoch, p.seq)
}

func (l *boxLine) noteOpen(log *slog.Logger, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	l.mu.Lock()
	changed := msg != l.openErr
	l.openErr = msg
	l.mu.Unlock()
	if !changed {
		return
	}
	if err != nil {
		log.Warn("relay tunnel: line has no socket", "line", l.Name, "err", err)
	} else {
		log.Info("relay tunnel: line socket open", "line", l.Name, "interface", l.Interface)
	}
}

func (l *boxLine) noteReachable(log *slog.Logger, now time.Time) {
	r := l.reachable(now)
	l.mu.Lock()
	changed := r != l.wasReachable
	l.wasReachable = r
	l.mu.Unlock()
	if changed {
		log.Info("relay tunnel: line", "line", l.Name, "reachable", r)
	}
}

func (l *boxLine) stats(now time.Time, current bool) LineStats {
	st := LineStats{
		Name: l.Name, Interface: l.Interface, Current: current, Open: l.s.Load() != nil,
		Reachable: l.reachable(now),
		BytesOut:  l.bytesOut.Load(), BytesIn: l.bytesIn.Load(), DuplicateBytesOut: l.dupOut.Load(),
		SendErrors: l.sendErrs.Load(),
	}
	if last := l.lastReply.Load(); last != 0 {
		st.LastReply = time.Unix(0, last)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st.RTT, st.ProbesSent, st.ProbesAnswered = l.rtt, l.sent, l.answered
	var n, lost int
	for _, s := range l.ring {
		switch {
		case s.seq == 0:
		case s.answered:
			n++
		case now.Sub(s.sent) > lossGrace:
			n++
			lost++
		}
	}
	if n > 0 {
		st.Loss = float64(lost) / float64(n)
	}
	return st
}

// Stats returns every line's state, in the order of BoxOptions.Lines.
func (b *BoxBind) Stats() []LineStats {
	now := time.Now()
	cur := int(b.cur.Load())
	out := make([]LineStats, len(b.lines))
	for i, l := range b.lines {
		out[i] = l.stats(now, i == cur)
	}
	return out
}

// Reachable says whether the relay answers on any line.
func (b *BoxBind) Reachable() bool {
	now := time.Now()
	for _, l := range b.lines {
		if l.reachable(now) {
			return true
		}
	}
	return false
}

// PublicKey is the box's WireGuard public key (from BoxOptions.Private).
func (b *BoxBind) PublicKey() wgtypes.Key { return b.public }

// Rejected counts probe-looking datagrams that were not a valid reply.
func (b *BoxBind) Rejected() uint64 { return b.rejects.n.Load() }

// countLog counts an event anyone or any dead line can cause at packet rate, and logs it at
// most once a minute.
type countLog struct {
	log        *slog.Logger
	msg        string
	n, loggedN atomic.Uint64
	lastLog    atomic.Int64
}

func newCountLog(log *slog.Logger, msg string) countLog { return countLog{log: log, msg: msg} }

func (r *countLog) add(now time.Time) {
	n := r.n.Add(1)
	last := r.lastLog.Load()
	if now.UnixNano()-last < int64(time.Minute) || !r.lastLog.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	prev := r.loggedN.Swap(n)
	r.log.Warn(r.msg, "count", n-prev, "total", n)
}

const rejectMsg = "relay tunnel: probes rejected (forged, replayed, stale or from an unknown key)"
