package sipguard

import (
	"net/netip"
	"time"
)

// Counters beside the per-source ones: per target extension (many sources guessing one
// password), per network (one host rotating through its IPv6 /64, or a /24) and per user at
// a site (an office's NAT: one phone's wrong password must not block its neighbours). Each
// map is bounded; when one is full, the entry with the least counted among a few sampled
// makes room, so junk cannot push out what is close to a verdict.

// siteThrottle is how long a site is held after each failure of a user past its threshold.
const siteThrottle = time.Second

const (
	maxExts  = 4096
	maxNets  = 16384
	maxUsers = 4096
)

// extRec counts failures on one extension and remembers the last sources that failed.
type extRec struct {
	w        window
	hotUntil int64
	srcs     [8]netip.Addr
	next     uint8
}

type netRec struct {
	fast slide
	slow window
}

type siteUser struct {
	a netip.Addr
	u uint32
}

type userRec struct {
	fast slide
	slow window
}

// targetUser is the extension a credentialed request is for: the registered address of a
// REGISTER, the caller of anything else.
func targetUser(m *Msg) []byte {
	method := m.CSeqMethod
	if m.Request {
		method = m.Method
	}
	if EqualFold(method, "REGISTER") || len(m.FromUser) == 0 {
		return m.ToUser
	}
	return m.FromUser
}

// site reports whether s registered with credentials recently: real phones are behind it.
func (e *Engine) site(s *source, now int64) bool {
	return s.okAt != 0 && e.T.SiteWindow > 0 && now-s.okAt <= int64(e.T.SiteWindow)
}

// netOf is the network a source is counted in: its IPv6 /64 or IPv4 /Net4Bits.
func (e *Engine) netOf(a netip.Addr) netip.Prefix {
	bits := 64
	if a.Is4() {
		bits = e.T.Net4Bits
		if bits <= 0 || bits > 32 {
			bits = 24
		}
	}
	p, _ := a.Prefix(bits)
	return p
}

// brink reports a hold when the credentialed request m from s is one failure from a
// verdict: the PBX's answer decides, and the source's next request must not get through
// while the block is being written.
func (e *Engine) brink(s *source, a netip.Addr, now int64, m *Msg) Finding {
	if e.T.Hold <= 0 || now < s.holdUntil {
		return Finding{}
	}
	var near bool
	if e.site(s, now) {
		near = e.T.SiteCeiling > 0 && s.fails.count(now, e.T.AuthWindow) >= e.T.SiteCeiling-1
	} else {
		user := targetUser(m)
		near = e.T.AuthFailures > 0 && s.fails.count(now, e.T.AuthWindow) >= e.T.AuthFailures-1 ||
			e.T.SlowFailures > 0 && s.slow.count(now, e.T.SlowWindow) >= e.T.SlowFailures-1 ||
			e.extNear(user, now) || e.netNear(a, now)
	}
	if !near {
		return Finding{}
	}
	s.holdUntil = now + int64(e.T.Hold)
	return Finding{Kind: KindHold, Actor: a, What: targetUser(m), For: e.T.Hold}
}

// authFailure counts a credentialed request the PBX rejected, everywhere it counts.
func (e *Engine) authFailure(s *source, a netip.Addr, now int64, m *Msg) Finding {
	user := targetUser(m)
	hot := e.countExt(user, a, now, e.site(s, now))
	np := e.netOf(a)
	fast, slow := e.countNet(np, now)
	n := s.fails.add(now, e.T.AuthWindow)
	if e.site(s, now) {
		if e.T.SiteCeiling > 0 && n >= e.T.SiteCeiling {
			return Finding{Kind: KindBruteForce, Actor: a, Count: n, What: user}
		}
		u := e.userRec(a, user)
		if u == nil {
			return Finding{}
		}
		un := u.slow.add(now, e.T.SlowWindow)
		uf := u.fast.add(now, e.T.AuthWindow)
		switch {
		case e.T.AuthFailures <= 0:
		case un == e.T.AuthFailures:
			return Finding{Kind: KindSiteUser, Actor: a, Count: un, What: user}
		case uf >= e.T.AuthFailures && e.T.Hold > 0 && now >= s.holdUntil:
			// Past the user's threshold and guessing fast: the site is held for a moment
			// after each failure, which caps the guessing rate (well above the ceiling's,
			// so a cracker still reaches it) while its phones retransmit through.
			s.holdUntil = now + int64(siteThrottle)
			return Finding{Kind: KindHold, Actor: a, What: user, For: siteThrottle}
		}
		return Finding{}
	}
	if e.T.AuthFailures > 0 && n >= e.T.AuthFailures {
		return Finding{Kind: KindBruteForce, Actor: a, Count: n, What: user}
	}
	if sl := s.slow.add(now, e.T.SlowWindow); e.T.SlowFailures > 0 && sl >= e.T.SlowFailures {
		return Finding{Kind: KindSlow, Actor: a, Count: sl, What: user}
	}
	if hot {
		return Finding{Kind: KindDistributed, Actor: a, Count: n, What: user}
	}
	if a.Is6() && !a.Is4In6() {
		if e.T.NetFailures6 > 0 && fast >= e.T.NetFailures6 || e.T.SlowFailures > 0 && slow >= e.T.SlowFailures {
			return Finding{Kind: KindNetwork, Actor: a, Count: max(fast, slow), What: user, Net: np}
		}
	} else if e.T.NetFailures4 > 0 && fast >= e.T.NetFailures4 {
		// An IPv4 /24 holds many subscribers: only fast guessing across it counts, and only
		// its offenders are blocked.
		return Finding{Kind: KindNetwork, Actor: a, Count: fast, What: user}
	}
	return Finding{}
}

// countExt counts a failure on user from a; it reports whether the extension is under a
// distributed attack (failures from several sources over the threshold).
func (e *Engine) countExt(user []byte, a netip.Addr, now int64, site bool) bool {
	if e.T.ExtFailures <= 0 || len(user) == 0 {
		return false
	}
	h := hash32(user)
	r := e.exts[h]
	if r == nil {
		if len(e.exts) >= maxExts && !e.evictExt(now) {
			return false
		}
		r = &extRec{}
		e.exts[h] = r
	}
	if now-r.w.start > int64(e.T.ExtWindow) {
		r.srcs, r.next = [8]netip.Addr{}, 0
	}
	n := r.w.add(now, e.T.ExtWindow)
	if !site && !containsAddr(r.srcs[:], a) {
		r.srcs[int(r.next)%len(r.srcs)] = a
		if r.next < 255 {
			r.next++
		}
	}
	if n >= e.T.ExtFailures && r.sources() >= e.T.ExtSources {
		r.hotUntil = now + int64(e.T.ExtWindow)
	}
	return now < r.hotUntil
}

// sources is how many distinct sources failed on the extension in its window (the ring
// holds the last few: beyond, at least that many).
func (r *extRec) sources() int { return min(int(r.next), len(r.srcs)) }

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, b := range as {
		if b == a {
			return true
		}
	}
	return false
}

// extNear: the extension is hot, or one failure from it.
func (e *Engine) extNear(user []byte, now int64) bool {
	if e.T.ExtFailures <= 0 || len(user) == 0 {
		return false
	}
	r := e.exts[hash32(user)]
	if r == nil {
		return false
	}
	return now < r.hotUntil || r.w.count(now, e.T.ExtWindow) >= e.T.ExtFailures-1 && r.sources() >= e.T.ExtSources-1
}

// HotSources lists the sources that failed recently on user while it is under a
// distributed attack (none otherwise), for blocking them all at once.
func (e *Engine) HotSources(user []byte, now time.Time) []netip.Addr {
	r := e.exts[hash32(user)]
	if r == nil || now.UnixNano() >= r.hotUntil {
		return nil
	}
	var out []netip.Addr
	for _, a := range r.srcs {
		if a.IsValid() && !e.local(a) {
			if s := e.sources[a]; s == nil || !s.done && !e.site(s, now.UnixNano()) {
				out = append(out, a)
			}
		}
	}
	return out
}

// countNet counts a failure in network p; it returns the counts in AuthWindow and SlowWindow.
func (e *Engine) countNet(p netip.Prefix, now int64) (fast, slow int) {
	if !p.IsValid() {
		return 0, 0
	}
	r := e.nets[p]
	if r == nil {
		if len(e.nets) >= maxNets && !e.evictNet(now) {
			return 0, 0
		}
		r = &netRec{}
		e.nets[p] = r
	}
	return r.fast.add(now, e.T.AuthWindow), r.slow.add(now, e.T.SlowWindow)
}

// netNear: a's network is one failure from a verdict.
func (e *Engine) netNear(a netip.Addr, now int64) bool {
	r := e.nets[e.netOf(a)]
	if r == nil {
		return false
	}
	if a.Is4() || a.Is4In6() {
		return e.T.NetFailures4 > 0 && r.fast.count(now, e.T.AuthWindow) >= e.T.NetFailures4-1
	}
	return e.T.NetFailures6 > 0 && r.fast.count(now, e.T.AuthWindow) >= e.T.NetFailures6-1 ||
		e.T.SlowFailures > 0 && r.slow.count(now, e.T.SlowWindow) >= e.T.SlowFailures-1
}

func (e *Engine) userRec(a netip.Addr, user []byte) *userRec {
	k := siteUser{a, hash32(user)}
	u := e.users[k]
	if u == nil {
		if len(e.users) >= maxUsers {
			for k2 := range e.users { // sites are few: any one makes room
				delete(e.users, k2)
				break
			}
		}
		u = &userRec{}
		e.users[k] = u
	}
	return u
}

// evictExt makes room in the extension table: the least counted of a few sampled, unless
// all are hot.
func (e *Engine) evictExt(now int64) bool {
	var vk uint32
	var v *extRec
	i := 0
	for k, r := range e.exts {
		if now >= r.hotUntil && (v == nil || r.w.count(now, e.T.ExtWindow) < v.w.count(now, e.T.ExtWindow)) {
			vk, v = k, r
		}
		if i++; i == evictSample {
			break
		}
	}
	if v != nil {
		delete(e.exts, vk)
	}
	return v != nil
}

func (e *Engine) evictNet(now int64) bool {
	var vk netip.Prefix
	var v *netRec
	vn, i := 0, 0
	for k, r := range e.nets {
		n := r.fast.count(now, e.T.AuthWindow) + r.slow.count(now, e.T.SlowWindow)
		if v == nil || n < vn {
			vk, v, vn = k, r, n
		}
		if i++; i == evictSample {
			break
		}
	}
	if v != nil {
		delete(e.nets, vk)
	}
	return v != nil
}

// expireAggregates drops counters whose windows all ended before b.
func (e *Engine) expireAggregates(b int64) {
	for k, r := range e.exts {
		if r.w.start+int64(e.T.ExtWindow) < b && r.hotUntil < b {
			delete(e.exts, k)
		}
	}
	for k, r := range e.nets {
		if r.fast.start+2*int64(e.T.AuthWindow) < b && r.slow.start+int64(e.T.SlowWindow) < b {
			delete(e.nets, k)
		}
	}
	for k, r := range e.users {
		if r.slow.start+int64(e.T.SlowWindow) < b && r.fast.start+2*int64(e.T.AuthWindow) < b {
			delete(e.users, k)
		}
	}
}

var tlsWhat = []byte("new SIP-TLS connections in a minute")

// tlsConn counts a new SIP-TLS connection from a.
func (e *Engine) tlsConn(a netip.Addr, now int64) Finding {
	if e.T.TLSRate <= 0 || e.local(a) {
		return Finding{}
	}
	s := e.source(a, now)
	if s.done {
		return Finding{}
	}
	if n := s.tls.add(now, time.Minute); n > e.T.TLSRate {
		// Counted on SYNs, which anyone can forge: proven by a handshake of its own.
		return Finding{Kind: KindTLSRate, Actor: a, Count: n, What: tlsWhat, Proof: s.recentProof(now)}
	}
	return Finding{}
}
