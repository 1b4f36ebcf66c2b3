package calls

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/officeedge/appliance/sipguard"
)

// Limits that keep each call's memory fixed and the table clean of calls whose end was
// never seen.
const (
	maxIDLen      = 128              // bytes of a Call-ID kept
	maxUserLen    = 32               // bytes of an extension or remote number kept
	setupTimeout  = 3 * time.Minute  // an INVITE never answered is forgotten
	mediaTimeout  = 60 * time.Second // an answered call silent both ways this long is over
	minuteLen     = time.Minute      // the interval whose worst is kept
	alertMinMedia = 5 * time.Second  // a running minute this long rates a call on its own
)

// Settings are what a Tracker follows.
type Settings struct {
	PBX         []netip.Addr // the PBX's LAN addresses
	SIPPort     uint16
	MaxCalls    int
	OneWayAfter time.Duration
	MOSAlert    float64 // 0: no poor-call alerts
	KeepEnded   int     // ended calls kept (default 500)
}

// Counters are totals since start.
type Counters struct {
	Calls     uint64 `json:"calls"`       // answered calls followed
	OneWay    uint64 `json:"one_way"`     // calls that had one-way audio
	Poor      uint64 `json:"poor"`        // calls whose MOS fell below the alert threshold
	Untracked uint64 `json:"untracked"`   // INVITEs not followed: the table was full
	Malformed uint64 `json:"malformed"`   // SIP messages that did not parse
	Packets   uint64 `json:"rtp_packets"` // RTP packets matched to a call
	// CaptureDrops are packets the kernel dropped on the capture socket (a full buffer):
	// they show as loss that the line did not cause.
	CaptureDrops uint64 `json:"capture_drops"`
}

// call is one call's state, in fixed memory.
type call struct {
	id, callID    string
	ext, remote   string
	outbound      bool
	started       time.Time
	answered      time.Time
	ended         time.Time
	endReason     string
	line          string
	pbx, far      media
	havePBX, have bool
	codec         codec
	events        uint8
	in, out       stream // to and from the PBX
	rttMs         float64
	srs           [4]srSeen // the PBX's last sender reports, for the far end's round trip
	srNext        int

	minuteStart time.Time
	lastMinute  float64 // MOS of the last whole minute (0: none yet)
	worst       Minute
	haveWorst   bool

	oneWay, poor               bool // ever
	oneWayAlerted, poorAlerted bool // an alert is up now
	oneWayRaised               time.Time
}

// reraiseAfter: media that comes and goes raises a call's one-way alert at most this often
// (a log line and an email each time).
const reraiseAfter = time.Minute

// srSeen is when the box saw a sender report, by its NTP timestamp's middle 32 bits.
type srSeen struct {
	mid uint32
	at  int64
}

// Tracker follows calls from their SIP and measures their RTP. It is safe for concurrent use.
type Tracker struct {
	mu     sync.Mutex
	set    Settings
	calls  map[string]*call // by Call-ID
	media  map[uint16]*call // by the PBX's media port
	ended  []Call           // ring of ended calls, oldest first
	c      Counters
	msg    sipguard.Msg
	hdr    rtp.Header
	alerts []Action
}

// Action is an alert to raise or clear, produced under the Tracker's lock and applied by
// its owner outside it.
type Action struct {
	Raise   bool
	Key     string
	Message string
}

// NewTracker returns an empty tracker.
func NewTracker(s Settings) *Tracker {
	if s.KeepEnded <= 0 {
		s.KeepEnded = 500
	}
	if s.MaxCalls <= 0 {
		s.MaxCalls = 200
	}
	if s.OneWayAfter <= 0 {
		s.OneWayAfter = 2 * time.Second
	}
	return &Tracker{set: s, calls: map[string]*call{}, media: map[uint16]*call{}}
}

func (t *Tracker) isPBX(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.set.PBX {
		if a == p {
			return true
		}
	}
	return false
}

// Handle reads one raw IP packet captured at now: SIP to or from the PBX, or RTP/RTCP on a
// followed call's media port. Anything else is ignored.
func (t *Tracker) Handle(now time.Time, pkt []byte) {
	u, ok := sipguard.DecodeUDP(pkt)
	if !ok || len(u.Payload) == 0 {
		return
	}
	fromPBX, toPBX := t.isPBX(u.Src), t.isPBX(u.Dst)
	if fromPBX == toPBX {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	port := u.DstPort
	if fromPBX {
		port = u.SrcPort
	}
	if port == t.set.SIPPort {
		t.sip(now, &u, fromPBX)
		return
	}
	t.rtp(now, &u, port, fromPBX)
}

// sip follows a call's signalling.
func (t *Tracker) sip(now time.Time, u *sipguard.UDP, fromPBX bool) {
	m := &t.msg
	if err := sipguard.Parse(u.Payload, m); err != nil && !errors.Is(err, sipguard.ErrTruncated) {
		t.c.Malformed++
		return
	}
	if len(m.CallID) == 0 {
		return
	}
	id := m.CallID
	if len(id) > maxIDLen {
		id = id[:maxIDLen]
	}
	c := t.calls[string(id)]
	body := u.Payload[min(m.BodyOff, len(u.Payload)):]
	if m.ContentLen >= 0 && m.ContentLen < len(body) {
		body = body[:m.ContentLen]
	}
	if m.Request {
		switch {
		case sipguard.EqualFold(m.Method, "INVITE"):
			if c == nil {
				if len(t.calls) >= t.set.MaxCalls {
					t.c.Untracked++
					return
				}
				c = &call{callID: string(id), id: shortID(id), outbound: fromPBX, started: now}
				c.ext, c.remote = user(m.ToUser), user(m.FromUser)
				if fromPBX {
					c.ext, c.remote = user(m.FromUser), user(m.ToUser)
				}
				t.calls[c.callID] = c
			}
			t.sdp(c, body, fromPBX)
		case sipguard.EqualFold(m.Method, "ACK"):
			if c != nil {
				t.sdp(c, body, fromPBX)
			}
		case sipguard.EqualFold(m.Method, "BYE"):
			if c != nil {
				reason := "hung up by the far end"
				if fromPBX {
					reason = "hung up by the office"
				}
				t.end(c, now, reason)
			}
		case sipguard.EqualFold(m.Method, "CANCEL"):
			if c != nil && c.answered.IsZero() {
				t.forget(c)
			}
		}
		return
	}
	if c == nil || !sipguard.EqualFold(m.CSeqMethod, "INVITE") {
		return
	}
	switch {
	case m.Status < 200:
		t.sdp(c, body, fromPBX) // early media
	case m.Status < 300:
		t.sdp(c, body, fromPBX)
		if c.answered.IsZero() {
			c.answered, c.minuteStart = now, now
			t.c.Calls++
		}
	case c.answered.IsZero():
		t.forget(c) // refused, challenged or unanswered: not a call (yet)
	}
}

// sdp takes one side's SDP; the PBX's media port is what its RTP is matched by.
func (t *Tracker) sdp(c *call, body []byte, fromPBX bool) {
	if len(body) == 0 {
		return
	}
	m, ok := parseSDP(body)
	if !ok {
		return
	}
	c.codec, c.events = m.codec, m.events
	if !fromPBX {
		c.far, c.have = m, true
		return
	}
	if c.havePBX && c.pbx.port != m.port && t.media[c.pbx.port] == c {
		delete(t.media, c.pbx.port)
	}
	c.pbx, c.havePBX = m, true
	if other := t.media[m.port]; other != nil && other != c {
		// The PBX reused the port: the older call's media is over.
		other.havePBX = false
	}
	t.media[m.port] = c
}

// clockOf is a payload type's RTP clock rate in this call.
func (c *call) clockOf(pt uint8) uint32 {
	switch {
	case c.havePBX && pt == c.pbx.pt && c.pbx.codec.clock != 0:
		return c.pbx.codec.clock
	case c.have && pt == c.far.pt && c.far.codec.clock != 0:
		return c.far.codec.clock
	case c.codec.clock != 0 && (pt == c.pbx.pt || pt == c.far.pt):
		return c.codec.clock
	}
	if k, ok := staticCodecs[pt]; ok {
		return k.clock
	}
	return defaultCodec.clock
}

// rtp measures a packet on a PBX media port; port+1 is its RTCP (RFC 3550 §11).
func (t *Tracker) rtp(now time.Time, u *sipguard.UDP, port uint16, fromPBX bool) {
	p := u.Payload
	c := t.media[port]
	rtcpPort := false
	if c == nil && port > 0 {
		c, rtcpPort = t.media[port-1], true
	}
	if c == nil || len(p) < 8 || p[0]>>6 != 2 {
		return
	}
	// RTCP on its own port, or multiplexed on the RTP port (RFC 5761: types 192-223).
	if rtcpPort || (p[1] >= 192 && p[1] <= 223) {
		t.rtcp(now, c, p, fromPBX)
		return
	}
	if _, err := t.hdr.Unmarshal(p); err != nil {
		return
	}
	t.c.Packets++
	s := &c.in
	if fromPBX {
		s = &c.out
	}
	s.add(now.UnixNano(), &t.hdr, c.clockOf, c.events)
}

// shortID is a call's stable short name for labels: Call-IDs are long and may carry
// addresses.
func shortID(id []byte) string {
	h := sha256.Sum256(id)
	return hex.EncodeToString(h[:5])
}

// user keeps a SIP user part safe to show and to use as a label: digits, letters and
// + * # . _ - only, at most maxUserLen bytes.
func user(b []byte) string {
	out := make([]byte, 0, min(len(b), maxUserLen))
	for _, c := range b {
		if len(out) == maxUserLen {
			break
		}
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '+' || c == '*' || c == '#' || c == '.' || c == '_' || c == '-' {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "unknown"
	}
	return string(out)
}

// forget drops a call that never was one (refused, cancelled, timed out in setup).
func (t *Tracker) forget(c *call) {
	delete(t.calls, c.callID)
	if c.havePBX && t.media[c.pbx.port] == c {
		delete(t.media, c.pbx.port)
	}
	t.clearAlerts(c)
}

// end closes an answered call: its last minute is rated and it joins the ended ring.
func (t *Tracker) end(c *call, now time.Time, reason string) {
	if c.answered.IsZero() {
		t.forget(c)
		return
	}
	c.ended, c.endReason = now, reason
	if now.Sub(c.minuteStart) >= alertMinMedia {
		t.closeMinute(c, now)
	}
	t.forget(c)
	rec := c.snapshot(now)
	t.ended = append(t.ended, rec)
	if n := len(t.ended); n > t.set.KeepEnded {
		t.ended = append(t.ended[:0], t.ended[n-t.set.KeepEnded:]...)
	}
}

// closeMinute rates the interval since minuteStart and keeps it if it is the worst yet.
func (t *Tracker) closeMinute(c *call, now time.Time) {
	in, out := c.in.next(), c.out.next()
	m, ok := c.rate(c.minuteStart, in, out)
	c.minuteStart = now
	if !ok {
		return
	}
	c.lastMinute = m.MOS
	if !c.haveWorst || m.MOS < c.worst.MOS {
		c.worst, c.haveWorst = m, true
	}
}

// rate is the MOS of an interval: that of its worse direction that carried media.
func (c *call) rate(start time.Time, in, out interval) (Minute, bool) {
	m := Minute{Start: start, MOS: 5}
	ok := false
	for _, d := range []struct {
		name string
		iv   interval
	}{{DirIn, in}, {DirOut, out}} {
		if d.iv.expected == 0 {
			continue
		}
		loss := float64(d.iv.lost) / float64(d.iv.expected)
		v := estimate(loss, d.iv.jitterMax, c.rttMs, c.codec)
		if !ok || v < m.MOS {
			m.MOS, m.LossPct, m.JitterMs, m.Direction = round2(v), round2(loss*100), round2(d.iv.jitterMax), d.name
		}
		ok = true
	}
	return m, ok
}

// Tick does what time decides, about once a second: calls whose end was never seen are
// closed, minutes are rated, one-way audio and poor quality alerted. line is the uplink
// the calls use now. It returns the alerts to raise or clear.
func (t *Tracker) Tick(now time.Time, line string) []Action {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.calls {
		if c.answered.IsZero() {
			if now.Sub(c.started) > setupTimeout {
				t.forget(c)
			}
			continue
		}
		if line != "" {
			c.line = line
		}
		last := max(c.in.last, c.out.last, c.answered.UnixNano())
		if now.Sub(time.Unix(0, last)) > mediaTimeout {
			t.end(c, now, "no media for a minute (its BYE was not seen)")
			continue
		}
		if now.Sub(c.minuteStart) >= minuteLen {
			t.closeMinute(c, now)
		}
		t.checkOneWay(c, now)
		t.checkPoor(c, now)
	}
	a := t.alerts
	t.alerts = nil
	return a
}

// checkOneWay: media in one direction only for longer than OneWayAfter after the answer.
// A call on hold (sendonly, recvonly, inactive) is expected to be quiet one way.
func (t *Tracker) checkOneWay(c *call, now time.Time) {
	after := t.set.OneWayAfter
	quiet := func(s *stream) bool {
		since := max(s.last, c.answered.UnixNano())
		return now.Sub(time.Unix(0, since)) > after
	}
	inQ, outQ := quiet(&c.in), quiet(&c.out)
	oneWay := inQ != outQ && !c.pbx.hold && !c.far.hold
	switch {
	case oneWay && !c.oneWayAlerted && (c.oneWayRaised.IsZero() || now.Sub(c.oneWayRaised) >= reraiseAfter):
		c.oneWayAlerted, c.oneWayRaised = true, now
		if !c.oneWay {
			c.oneWay = true
			t.c.OneWay++
		}
		what := "the far end's audio does not reach the PBX (nothing to the PBX"
		if outQ {
			what = "the PBX's audio does not leave for the far end (nothing from the PBX"
		}
		t.alerts = append(t.alerts, Action{Raise: true, Key: c.alertKey("oneway"), Message: "One-way audio on a call of extension " + c.ext + " (with " + c.remote + ") over " + orUnknown(c.line) + ": " + what + " for more than " + after.String() + "). Check the firewall and NAT on the media path and the addresses the PBX puts in its SDP."})
	case !oneWay && c.oneWayAlerted && !inQ && !outQ:
		c.oneWayAlerted = false
		t.alerts = append(t.alerts, Action{Key: c.alertKey("oneway")})
	}
}

// checkPoor: the running minute (once long enough) or the last whole one rates below the
// threshold.
func (t *Tracker) checkPoor(c *call, now time.Time) {
	if t.set.MOSAlert <= 0 {
		return
	}
	v := c.lastMinute
	if now.Sub(c.minuteStart) >= alertMinMedia {
		if m, ok := c.rate(c.minuteStart, c.in.current(), c.out.current()); ok {
			v = m.MOS
		}
	}
	if v == 0 || v >= t.set.MOSAlert || c.poorAlerted {
		return
	}
	c.poorAlerted = true
	if !c.poor {
		c.poor = true
		t.c.Poor++
	}
	t.alerts = append(t.alerts, Action{Raise: true, Key: c.alertKey("mos"), Message: "Poor call quality for extension " + c.ext + " (with " + c.remote + ") over " + orUnknown(c.line) + ": estimated MOS " + ftoa(v) + ", below " + ftoa(t.set.MOSAlert) + ". Loss or jitter on the line: see the calls card."})
}

// alertKey names a call's alert: one per extension (raising it again counts a repeat),
// so alerts nobody acknowledges never pile up per call.
func (c *call) alertKey(kind string) string { return "calls." + kind + "/" + c.ext }

// clearAlerts clears a call's alerts when it ends: they stay listed until acknowledged.
func (t *Tracker) clearAlerts(c *call) {
	if c.oneWayAlerted {
		t.alerts = append(t.alerts, Action{Key: c.alertKey("oneway")})
	}
	if c.poorAlerted {
		t.alerts = append(t.alerts, Action{Key: c.alertKey("mos")})
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown line"
	}
	return s
}
