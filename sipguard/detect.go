package sipguard

import (
	"net/netip"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// Kind is what a detector found.
type Kind uint8

// Kinds of finding.
const (
	KindNone        Kind = iota
	KindScanner          // a known scanner's User-Agent
	KindBruteForce       // credentials rejected again and again
	KindChallenges       // challenge after challenge never answered with credentials
	KindEnumeration      // many distinct users answered 404/403
	KindFlood            // request rate over the limit
	KindTollFraud        // INVITE to a denied destination
	KindCallRate         // calls per minute over the cap
	KindConcurrent       // concurrent calls over the cap
	KindWeakAuth         // posture: an extension whose auth name is its number
	KindFeed             // listed by a community blocklist
	KindManual           // blocked by hand
	KindSlow             // credentials rejected again and again over hours
	KindDistributed      // one extension's password tried from many sources
	KindNetwork          // many failures from one /24 (IPv4) or /64 (IPv6)
	KindTLSRate          // new SIP-TLS connections per minute over the limit
	KindSiteUser         // one user at a site with working phones keeps failing: alert
	KindHold             // one failure from a verdict: hold the source until the answer
)

var kindNames = [...]string{"none", "scanner", "brute-force", "unanswered-challenges", "enumeration", "flood", "toll-fraud", "call-rate", "concurrent-calls", "weak-auth-name", "community-list", "manual",
	"slow-brute-force", "distributed-brute-force", "network-brute-force", "tls-rate", "site-user-failures", "hold"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Blocks reports whether a finding of this kind blocks its actor (unless protected).
func (k Kind) Blocks() bool {
	return k != KindNone && k != KindWeakAuth && k != KindSiteUser && k != KindHold
}

// Finding is a detector's verdict on an actor. What views the triggering message.
type Finding struct {
	Kind  Kind
	Actor netip.Addr
	Count int    // events counted towards the threshold
	What  []byte // the scanner name, the dialled number, the user...
	// Net, when valid, is the network to block instead of Actor alone (an IPv6 /64).
	Net netip.Prefix
	For time.Duration // a hold's length
	// Proof: the source proved it receives what is sent to its address (proof.go); only
	// then is a verdict shared with the fleet, and only then does it escalate.
	Proof Proof
}

// Thresholds are the detectors' settings (from [sipguard]).
type Thresholds struct {
	ScannerAgents []string // lower case substrings of User-Agent
	AuthFailures  int
	AuthWindow    time.Duration
	Challenges    int // unanswered challenges in AuthWindow
	EnumUsers     int // distinct users answered 404/403 in EnumWindow
	EnumWindow    time.Duration
	FloodRate     int // requests per second per source
	CallsPerMin   int
	Concurrent    int
	DenyPrefixes  []string // digits after the international prefix: "881", "1876"
	HomeCountry   string   // non-empty: only this country code may be dialled internationally
	// Local networks hold the office's own hosts (the PBX, extensions): their findings
	// are reported, never blocked, and only destination checks apply to them.
	Local []netip.Prefix
	// Trusted peers (trunks, remote offices) carry the office's own calls: the call caps do
	// not apply to them; their other findings are alerts, never blocks (see Guard).
	Trusted []netip.Prefix

	// Slow guessing: credentialed failures from one source in SlowWindow (hours).
	SlowFailures int
	SlowWindow   time.Duration
	// Distributed guessing: ExtFailures failures on one extension from at least ExtSources
	// sources in ExtWindow make the extension hot: every source failing on it then blocks.
	ExtFailures int
	ExtSources  int
	ExtWindow   time.Duration
	// Network counters: failures in AuthWindow summed over an IPv4 /Net4Bits (NetFailures4:
	// each offending address is blocked) and over an IPv6 /64 (NetFailures6: the /64 is).
	Net4Bits     int
	NetFailures4 int
	NetFailures6 int
	// Sites: a source that registered with credentials within SiteWindow has real phones
	// behind it (an office's NAT). A user failing there raises an alert instead of blocking
	// the source, until SiteCeiling failures in AuthWindow from it (0: no ceiling).
	SiteWindow  time.Duration
	SiteCeiling int
	// TLSRate caps new SIP-TLS connections per minute per source (0: off).
	TLSRate int
	// Hold: how long a source one failure from a verdict is held in the kernel once its
	// deciding request is on its way to the PBX (0: no hold).
	Hold time.Duration
}

// DefaultScannerAgents and DefaultDenyPrefixes are the built-in lists (kept in package
// config, which fills them in when [sipguard] does not set its own).
var (
	DefaultScannerAgents = config.DefaultScannerAgents
	DefaultDenyPrefixes  = config.DefaultDenyPrefixes
)

// window counts events in a fixed time window.
type window struct {
	start int64
	n     uint32
}

func (w *window) add(now int64, span time.Duration) int {
	if now-w.start > int64(span) {
		w.start, w.n = now, 0
	}
	w.n++
	return int(w.n)
}

func (w *window) count(now int64, span time.Duration) int {
	if now-w.start > int64(span) {
		return 0
	}
	return int(w.n)
}

type pending struct{ call, cseq uint32 }

// slide counts events in a sliding window, estimated from two fixed ones (the previous
// window's count weighted by how much of it still overlaps), so a burst straddling a window
// edge counts whole.
type slide struct {
	window
	prev uint32
}

func (w *slide) add(now int64, span time.Duration) int {
	w.roll(now, span)
	w.n++
	return w.est(now, span)
}

func (w *slide) count(now int64, span time.Duration) int {
	w.roll(now, span)
	return w.est(now, span)
}

func (w *slide) roll(now int64, span time.Duration) {
	switch el := now - w.start; {
	case el <= int64(span):
	case el <= 2*int64(span):
		w.prev, w.n, w.start = w.n, 0, w.start+int64(span)
	default:
		w.prev, w.n, w.start = 0, 0, now
	}
}

func (w *slide) est(now int64, span time.Duration) int {
	if w.prev == 0 || span <= 0 {
		return int(w.n)
	}
	left := int64(span) - (now - w.start)
	if left < 0 {
		left = 0
	}
	return int(w.n) + int(uint64(w.prev)*uint64(left)/uint64(span))
}

// source is what the engine keeps per source address; sized to keep 100k sources in a few
// tens of MB.
type source struct {
	first, last int64
	okAt        int64 // last credentialed REGISTER answered 2xx: a site with real phones
	holdUntil   int64 // held in the kernel until then, awaiting the PBX's answer
	flood       window
	fails       slide
	slow        window
	chal        window
	cred        window
	enumW       window
	callMin     window
	tls         window
	pend        [8]pending
	pendAuth    uint8 // bit i: pend[i] carried credentials
	pendI       uint8
	enumN       uint8
	done        bool               // already acted upon: stop re-reporting
	pendProven  uint8              // bit i: pend[i] was proven (proof.go)
	proof       Proof              // how the source last proved it receives (proof.go)
	provenAt    int64              // when
	nonceI      uint8              // next slot of nonces
	nonceAt     int64              // the last challenge the PBX sent it
	nonces      [nonceSlots]uint64 // hashes of the nonces of those challenges
	enum        [16]uint32
	calls       [8]uint32
	Counts      Counts
}

// Counts are what was seen from a source, for reports.
type Counts struct {
	Requests, Responses, Register, Invite, Options, Other uint32
	Challenged, Forbidden, NotFound, OK                   uint32
}

// MaxSources bounds the sources an engine tracks (about 420 bytes each with the hashes of the
// last nonces the PBX sent them, plus the map): a flood of distinct, possibly forged, source
// addresses must not grow memory without limit.
const MaxSources = 1 << 17

// sourceChunk is how many source records are allocated at once, so a new source costs an
// allocation only once in a while, never per packet.
const sourceChunk = 512

// Engine runs the detectors over parsed messages. It is not safe for concurrent use: the
// capture loop owns it.
type Engine struct {
	T       Thresholds
	Max     int // sources tracked at most (MaxSources by default); beyond, see record
	sources map[netip.Addr]*source
	exts    map[uint32]*extRec // per target extension (hash of the user)
	nets    map[netip.Prefix]*netRec
	users   map[siteUser]*userRec // per user at a site
	free    []*source             // records of forgotten sources, for reuse
	slab    []source              // records not handed out yet
	agents  []string
	deny    []string
}

// NewEngine returns an engine with the given thresholds.
func NewEngine(t Thresholds) *Engine {
	e := &Engine{sources: make(map[netip.Addr]*source), Max: MaxSources,
		exts: make(map[uint32]*extRec), nets: make(map[netip.Prefix]*netRec), users: make(map[siteUser]*userRec)}
	e.SetThresholds(t)
	return e
}

// SetThresholds replaces the thresholds; what was counted so far is kept.
func (e *Engine) SetThresholds(t Thresholds) {
	e.T = t
	e.agents = e.agents[:0]
	for _, a := range t.ScannerAgents {
		if a = strings.ToLower(strings.TrimSpace(a)); a != "" {
			e.agents = append(e.agents, a)
		}
	}
	e.deny = t.DenyPrefixes
}

// Sources is the number of sources tracked.
func (e *Engine) Sources() int { return len(e.sources) }

// Counts returns what was seen from a source.
func (e *Engine) Counts(a netip.Addr) (c Counts, first, last time.Time, ok bool) {
	s := e.sources[a]
	if s == nil {
		return c, first, last, false
	}
	return s.Counts, time.Unix(0, s.first).UTC(), time.Unix(0, s.last).UTC(), true
}

// Forget drops a source's state (after an unblock, or when it went quiet).
func (e *Engine) Forget(a netip.Addr) {
	if s := e.sources[a]; s != nil {
		delete(e.sources, a)
		e.free = append(e.free, s)
	}
}

// Expire forgets sources not seen since before, except those with slow failures or a
// recent registration still inside their (longer) windows, and stale aggregate counters.
func (e *Engine) Expire(before time.Time) {
	b := before.UnixNano()
	long := b - int64(max(e.T.SlowWindow, e.T.SiteWindow))
	for a, s := range e.sources {
		if s.last < b && !((s.slow.n > 0 || s.okAt != 0) && s.last >= long) {
			delete(e.sources, a)
			e.free = append(e.free, s)
		}
	}
	e.expireAggregates(b)
}

func (e *Engine) local(a netip.Addr) bool { return inPrefixes(e.T.Local, a) }

// trusted: a's findings are alerts, never blocks (whether the owner would refuse the block
// is asked of it: Guard.neverBlocked).
func (e *Engine) trusted(a netip.Addr) bool { return inPrefixes(e.T.Trusted, a) }

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (e *Engine) source(a netip.Addr, now int64) *source {
	s := e.sources[a]
	if s == nil {
		s = e.record()
		*s = source{first: now}
		e.sources[a] = s
	}
	s.last = now
	return s
}

// record finds room for a new source: a forgotten record, a fresh one from the slab, or,
// when the engine is full, the record of the source farthest from a verdict among a few
// sampled (map iteration starts at a random place; the first with nothing counted is
// taken): a flood of new, possibly forged, addresses costs a bounded amount of memory and
// evicts its own kind, not an attacker counted towards a threshold nor a site with working
// phones, unless nearly the whole table is made of those.
func (e *Engine) record() *source {
	max := e.Max
	if max <= 0 {
		max = MaxSources
	}
	if len(e.sources) >= max {
		var va netip.Addr
		var vs *source
		vscore, i := 0, 0
		for a, s := range e.sources {
			if sc := e.score(s); vs == nil || sc < vscore || sc == vscore && s.last < vs.last {
				va, vs, vscore = a, s, sc
			}
			if i++; i == evictSample || vscore == 0 {
				break
			}
		}
		delete(e.sources, va)
		return vs
	}
	if n := len(e.free); n > 0 {
		s := e.free[n-1]
		e.free = e.free[:n-1]
		return s
	}
	if len(e.slab) == 0 {
		e.slab = make([]source, sourceChunk)
	}
	s := &e.slab[0]
	e.slab = e.slab[1:]
	return s
}

// evictSample is how many sources a full engine compares to pick one to forget.
const evictSample = 8

// score is how close a source is to a verdict (0: nothing counted), in 1/64ths of the way
// for each detector, plus a site's standing.
func (e *Engine) score(s *source) int {
	if s.done {
		return 0 // in the kernel already: its record only dedups packets in flight
	}
	frac := func(n uint32, of int) int {
		if of <= 0 || n == 0 {
			return 0
		}
		return 1 + int(n)*64/of
	}
	sc := frac(s.fails.n+s.fails.prev, e.T.AuthFailures) + frac(s.slow.n, e.T.SlowFailures) +
		frac(uint32(s.enumN), e.T.EnumUsers) + frac(s.chal.n, e.T.Challenges) + frac(s.tls.n, e.T.TLSRate)
	if s.okAt != 0 {
		sc += 64
	}
	return sc
}

func hash32(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// Observe runs the detectors on one message from src to dst at time now. Identity is the
// packet's source address (for a response: the address it answers), never a header.
func (e *Engine) Observe(src, dst netip.Addr, now time.Time, m *Msg) Finding {
	return e.ObserveProven(src, dst, now, m, ProofNone)
}

// ObserveProven is Observe for a message whose transport proved its source (p: it came on
// a connection whose handshake the source completed).
func (e *Engine) ObserveProven(src, dst netip.Addr, now time.Time, m *Msg, p Proof) Finding {
	t := now.UnixNano()
	if m.Request {
		s := e.source(src, t)
		if p == ProofNone && m.Auth && s.answers(m.Nonce, t) {
			p = ProofChallenge
		}
		s.proved(p, t)
		f := e.request(s, src, t, m, p)
		if f.Kind != KindNone {
			f.Proof = p // the deciding packet is this request
		}
		return f
	}
	return e.response(dst, t, m)
}

func (e *Engine) request(s *source, a netip.Addr, now int64, m *Msg, p Proof) Finding {
	s.Counts.Requests++
	invite := EqualFold(m.Method, "INVITE")
	switch {
	case invite:
		s.Counts.Invite++
	case EqualFold(m.Method, "REGISTER"):
		s.Counts.Register++
	case EqualFold(m.Method, "OPTIONS"):
		s.Counts.Options++
	default:
		s.Counts.Other++
	}
	if s.done {
		// Already acted upon (never set for office hosts or trusted peers): the INVITEs
		// still in flight before the kernel drops the source must not queue block after
		// block, each escalating the timeout.
		return Finding{}
	}
	local := e.local(a)
	if invite {
		// Destination checks apply to everyone, the office's own PBX included.
		if num := dialled(m); num != nil && e.denied(num) {
			return Finding{Kind: KindTollFraud, Actor: a, Count: 1, What: num}
		}
	}
	if local {
		if m.Auth && weakAuth(m) {
			return Finding{Kind: KindWeakAuth, Actor: a, What: m.AuthUser}
		}
		return Finding{}
	}
	for _, ag := range e.agents {
		if containsFold(m.UserAgent, ag) {
			return Finding{Kind: KindScanner, Actor: a, Count: 1, What: m.UserAgent}
		}
	}
	if e.T.FloodRate > 0 {
		if n := s.flood.add(now, time.Second); n > e.T.FloodRate {
			return Finding{Kind: KindFlood, Actor: a, Count: n, What: m.Method}
		}
	}
	// Remember the request so its answer can be matched (Call-ID and CSeq number).
	i := s.pendI % uint8(len(s.pend))
	s.pend[i] = pending{hash32(m.CallID), m.CSeq}
	if m.Auth {
		s.pendAuth |= 1 << i
		s.cred.add(now, e.T.AuthWindow)
	} else {
		s.pendAuth &^= 1 << i
	}
	if p != ProofNone {
		s.pendProven |= 1 << i
	} else {
		s.pendProven &^= 1 << i
	}
	s.pendI++
	if m.Auth {
		// Before the posture check: a cracker using the extension as auth name is held too.
		if f := e.brink(s, a, now, m); f.Kind != KindNone {
			return f
		}
		if weakAuth(m) {
			return Finding{Kind: KindWeakAuth, Actor: a, What: m.AuthUser}
		}
	}
	if invite && !e.trusted(a) {
		call := hash32(m.CallID)
		if !s.hasCall(call) {
			if e.T.CallsPerMin > 0 {
				if n := s.callMin.add(now, time.Minute); n > e.T.CallsPerMin {
					return Finding{Kind: KindCallRate, Actor: a, Count: n, What: dialled(m)}
				}
			}
			if n := s.addCall(call); e.T.Concurrent > 0 && n > e.T.Concurrent {
				return Finding{Kind: KindConcurrent, Actor: a, Count: n, What: dialled(m)}
			}
		}
	} else if EqualFold(m.Method, "BYE") || EqualFold(m.Method, "CANCEL") {
		s.endCall(hash32(m.CallID))
	}
	return Finding{}
}

func (s *source) hasCall(h uint32) bool {
	for _, c := range s.calls {
		if c == h && h != 0 {
			return true
		}
	}
	return false
}

// addCall records a call and returns how many are up. Slots are few: a source with more
// calls than slots is over any sane cap anyway.
func (s *source) addCall(h uint32) int {
	if h == 0 {
		h = 1
	}
	n := 1
	placed := false
	for i, c := range s.calls {
		if c != 0 {
			n++
		} else if !placed {
			s.calls[i] = h
			placed = true
		}
	}
	if !placed {
		n = len(s.calls) + 1
	}
	return n
}

func (s *source) endCall(h uint32) {
	for i, c := range s.calls {
		if c == h {
			s.calls[i] = 0
		}
	}
}

func (e *Engine) response(a netip.Addr, now int64, m *Msg) Finding {
	f, proven := e.answer(a, now, m)
	if proven && f.Kind != KindNone {
		f.Proof = e.sources[a].proof // the deciding packet is the request answered
	}
	return f
}

// answer runs the detectors on a response to a; proven says whether the request it answers
// was proven.
func (e *Engine) answer(a netip.Addr, now int64, m *Msg) (Finding, bool) {
	s := e.sources[a]
	if s == nil || e.local(a) {
		return Finding{}, false
	}
	s.last = now
	s.Counts.Responses++
	// Which request does this answer?
	call := hash32(m.CallID)
	auth, found, proven := false, false, false
	for i, p := range s.pend {
		if p.call == call && p.cseq == m.CSeq {
			auth, found, proven = s.pendAuth&(1<<i) != 0, true, s.pendProven&(1<<i) != 0
			break
		}
	}
	if m.Status == 401 || m.Status == 407 {
		s.challenged(m.Nonce, now)
	}
	invite := EqualFold(m.CSeqMethod, "INVITE")
	switch {
	case m.Status >= 200 && m.Status < 300:
		s.Counts.OK++
	case m.Status == 401 || m.Status == 407:
		s.Counts.Challenged++
	case m.Status == 403:
		s.Counts.Forbidden++
	case m.Status == 404:
		s.Counts.NotFound++
	}
	if invite && m.Status >= 300 {
		s.endCall(call)
	}
	if s.done || !found {
		return Finding{}, false
	}
	if auth && m.Status >= 200 && m.Status < 300 && EqualFold(m.CSeqMethod, "REGISTER") {
		s.okAt = now // a phone that knows its password registers from here
	}
	switch m.Status {
	case 401, 407, 403:
		if auth {
			return e.authFailure(s, a, now, m), proven
		}
		if m.Status == 403 {
			return e.enumerate(s, a, now, m), proven
		}
		n := s.chal.add(now, e.T.AuthWindow)
		if un := n - s.cred.count(now, e.T.AuthWindow); e.T.Challenges > 0 && un >= e.T.Challenges {
			return Finding{Kind: KindChallenges, Actor: a, Count: un, What: m.ToUser}, proven
		}
	case 404:
		return e.enumerate(s, a, now, m), proven
	}
	return Finding{}, false
}

func (e *Engine) enumerate(s *source, a netip.Addr, now int64, m *Msg) Finding {
	if e.T.EnumUsers <= 0 {
		return Finding{}
	}
	if now-s.enumW.start > int64(e.T.EnumWindow) {
		s.enumW.start, s.enumN = now, 0
	}
	h := hash32(m.ToUser)
	for _, u := range s.enum[:s.enumN] {
		if u == h {
			return Finding{}
		}
	}
	if int(s.enumN) < len(s.enum) {
		s.enum[s.enumN] = h
		s.enumN++
	}
	if n := int(s.enumN); n >= e.T.EnumUsers || n == len(s.enum) {
		return Finding{Kind: KindEnumeration, Actor: a, Count: n, What: m.ToUser}
	}
	return Finding{}
}

// MarkDone stops further findings on a source (it has been acted upon).
func (e *Engine) MarkDone(a netip.Addr) { e.markDone(a, true) }

func (e *Engine) markDone(a netip.Addr, done bool) {
	if s := e.sources[a]; s != nil {
		s.done = done
	}
}

// dialled is the number an INVITE asks for: the request URI's user, else To's.
func dialled(m *Msg) []byte {
	if len(m.RUser) > 0 {
		return m.RUser
	}
	return m.ToUser
}

// weakAuth: the auth name is the extension's own number (From's user), as the seeds warn.
func weakAuth(m *Msg) bool {
	if len(m.AuthUser) == 0 || len(m.AuthUser) != len(m.FromUser) {
		return false
	}
	for i, c := range m.AuthUser {
		if c < '0' || c > '9' || m.FromUser[i] != c {
			return false
		}
	}
	return true
}

// intlDigits strips visual separators and an international prefix (+, 00, 011) from a
// dialled number; intl says whether one was present.
func intlDigits(num []byte, buf *[32]byte) (d []byte, intl bool) {
	n := 0
	for i, c := range num {
		if c == '+' && i == 0 {
			intl = true
			continue
		}
		if c >= '0' && c <= '9' {
			if n < len(buf) {
				buf[n] = c
				n++
			}
			continue
		}
		if c == '-' || c == '.' || c == '(' || c == ')' || c == ' ' {
			continue
		}
		break
	}
	d = buf[:n]
	if !intl {
		switch {
		case len(d) > 3 && string(d[:3]) == "011":
			d, intl = d[3:], true
		case len(d) > 2 && string(d[:2]) == "00":
			d, intl = d[2:], true
		}
	}
	return d, intl
}

// denied reports whether an international number goes to a denied destination.
func (e *Engine) denied(num []byte) bool {
	var buf [32]byte
	d, intl := intlDigits(num, &buf)
	if !intl || len(d) == 0 {
		return false
	}
	if e.T.HomeCountry != "" && !hasPrefix(d, e.T.HomeCountry) {
		return true
	}
	for _, p := range e.deny {
		if hasPrefix(d, p) {
			return true
		}
	}
	return false
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }
