package sipguard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/store"
	"github.com/officeedge/appliance/netcfg"
)

// Blocker is the one writer of the kernel blocklist (netcfg.Owner): sipguard's blocks are
// claims on its entries, and community lists are its feeds.
type Blocker interface {
	Block(netcfg.BlockRequest) (netcfg.Entry, error)
	Unblock(p netip.Prefix, by string) (netcfg.Entry, error)
	SetFeed(name string, ps []netip.Prefix, keep time.Duration) (netcfg.FeedResult, error)
	Lookup(p netip.Prefix) (netcfg.Entry, bool)
	// Watch signals each change of the blocklist; the function ends the watch.
	Watch() (<-chan struct{}, func())
}

// packetCounter is a Blocker that also reads the kernel's drop counters (netcfg.Owner).
type packetCounter interface {
	Packets() map[netip.Prefix]uint64
}

// stateSnapshot is a Blocker with a snapshot of its blocklist (netcfg.Owner): read without a
// round trip per entry, it may lag behind the last request by a moment.
type stateSnapshot interface {
	State() *netcfg.BlockState
}

// Options configure a Guard.
type Options struct {
	Thresholds Thresholds
	Blocker    Blocker
	// ForgetFlows deletes the connection tracking entries of a source, so an established
	// UDP flow cannot carry on past the block (nil: skipped).
	ForgetFlows func(a netip.Addr) error
	Bus         *events.Bus
	Log         *slog.Logger
	StateDir    string         // blocks.json and evidence/ go here ("" keeps nothing)
	Protected   []netip.Prefix // trusted SIP peers and admin networks: alert, never block
	BlockTimes  []time.Duration
	// UnprovenBlockTime caps the block of a source that never proved it receives what is
	// sent to its address (a forged UDP source, proof.go); such blocks do not escalate.
	UnprovenBlockTime time.Duration
	// EvidenceAfter is how long a blocked source's packets keep being recorded for its pcap.
	EvidenceAfter time.Duration
	Abuse         *AbuseLookup // nil: no RDAP abuse contact lookups
	Site          string
	TLSPort       uint16 // SIP over TLS: new connections are counted, not read
	// Alerts gets toll-fraud attempts (they light the alert LED until acknowledged); nil: none.
	Alerts *alerts.Store
}

// Entry is sipguard's record of one of its blocks: why, since when, the offense it was and
// where its evidence is. The owner holds the block itself.
type Entry struct {
	Prefix  netip.Prefix `json:"prefix"`
	Reason  string       `json:"reason"`
	Detail  string       `json:"detail,omitempty"`
	Since   time.Time    `json:"since"`
	Expires time.Time    `json:"expires"` // sipguard's claim; listed: the owner's entry (zero: until unblocked)
	Offense int          `json:"offense"` // 1 for a first block; 0: an unproven source's, not counted
	// Proven: the source proved it receives what is sent to its address (Proof says how);
	// only a proven block is shared with the fleet, and only proven ones escalate.
	Proven   bool   `json:"proven"`
	Proof    string `json:"proof,omitempty"`
	Evidence string `json:"evidence,omitempty"`
	Report   string `json:"report,omitempty"`
	// Filled in from the owner when listed.
	Dropped   uint64 `json:"dropped"`
	InKernel  bool   `json:"in_kernel"`
	Remaining string `json:"remaining,omitempty"`
}

type offense struct {
	N    int       `json:"n"`
	Last time.Time `json:"last"`
}

type persisted struct {
	Blocks   map[string]*Entry   `json:"blocks"`
	Offenses map[string]*offense `json:"offenses"`
}

type action struct {
	f      Finding
	what   string
	sample string
	at     time.Time
}

// Guard watches packets, runs the detectors and blocks offenders.
type Guard struct {
	o Options

	mu     sync.Mutex // engine, ring, stats: taken per packet by the capture loop
	eng    *Engine
	ring   *ring
	msg    Msg
	Stats  Stats
	warned map[string]time.Time // findings reported without a block, to say them once

	acts  chan action
	holds chan hold      // sources to hold while the PBX's deciding answer is awaited
	bg    sync.WaitGroup // evidence writers
	tcp   *streams       // SIP over TCP, reassembled per connection

	smu sync.Mutex // st
	st  persisted

	saveMu sync.Mutex // one save at a time, so an older snapshot never overwrites a newer one

	// Networks never blocked, read by the worker while a reload replaces them.
	pmu   sync.RWMutex
	never []netip.Prefix // trusted peers, admin networks and the office's own networks
}

// Stats are running totals. Dropped counts packets the capture sockets lost (the kernel's
// PACKET_STATISTICS) and findings that could not be queued; CaptureDrops the former alone.
type Stats struct {
	Packets, SIP, Malformed, TLS, Findings, Blocks, Alerts, Dropped uint64
	Holds, CaptureDrops, Reassembled                                uint64
	// Detections counts findings by Kind (index); ByDetector names them.
	Detections [len(kindNames)]uint64 `json:"-"`
}

// ByDetector is the findings of each detector by its name ("brute-force").
func (s Stats) ByDetector() map[string]uint64 {
	out := map[string]uint64{}
	for k, n := range s.Detections {
		if kind := Kind(k); kind != KindNone && kind != KindHold {
			out[kind.String()] = n
		}
	}
	return out
}

// ErrActionQueueFull means findings arrive faster than blocks can be written.
var ErrActionQueueFull = errors.New("sipguard: action queue full")

// ErrNoBlocker means Options.Blocker is missing.
var ErrNoBlocker = errors.New("sipguard: no blocker (the firewall owner)")

// New makes a Guard and loads its records of earlier blocks and offenses (the owner, not
// sipguard, puts the blocks themselves back in the kernel).
func New(o Options) (*Guard, error) {
	if o.Blocker == nil {
		return nil, ErrNoBlocker
	}
	if len(o.BlockTimes) == 0 {
		o.BlockTimes = []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}
	}
	if o.UnprovenBlockTime <= 0 {
		o.UnprovenBlockTime = DefaultUnprovenBlockTime
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Bus == nil {
		o.Bus = events.New(100)
	}
	g := &Guard{
		o: o, eng: NewEngine(o.Thresholds), ring: newRing(4<<20, 16384),
		warned: map[string]time.Time{}, acts: make(chan action, 4096), holds: make(chan hold, 1024),
		tcp: newStreams(),
		st:  persisted{Blocks: map[string]*Entry{}, Offenses: map[string]*offense{}},
	}
	g.setNever(o.Thresholds, o.Protected)
	if err := g.load(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Guard) statePath() string {
	if g.o.StateDir == "" {
		return ""
	}
	return filepath.Join(g.o.StateDir, "blocks.json")
}

// load reads blocks.json: the records of blocks still running and the offenses.
func (g *Guard) load() error {
	p := g.statePath()
	if p == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(g.o.StateDir, "evidence"), 0o700); err != nil {
		return fmt.Errorf("sipguard: state directory: %w", err)
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sipguard: read blocklist: %w", err)
	}
	var st persisted
	if err := json.Unmarshal(data, &st); err != nil {
		// Keep the bad file for a person to look at; start empty rather than not at all.
		_ = os.Rename(p, p+".bad")
		g.o.Log.Error("sipguard: blocklist file unreadable, kept as .bad", "err", err)
		return nil
	}
	if st.Blocks == nil {
		st.Blocks = map[string]*Entry{}
	}
	if st.Offenses == nil {
		st.Offenses = map[string]*offense{}
	}
	now := time.Now()
	for k, e := range st.Blocks {
		switch {
		case e == nil || !e.Prefix.IsValid() || g.neverBlocked(e.Prefix):
			// An edited file, or a peer trusted since: a trusted peer is never blocked.
			g.o.Log.Warn("sipguard: blocklist record dropped", "key", k)
			delete(st.Blocks, k)
		case !e.Expires.IsZero() && !now.Before(e.Expires):
			delete(st.Blocks, k)
		}
	}
	g.st = st
	g.o.Log.Info("sipguard: block records loaded", "entries", len(st.Blocks), "offenses", len(st.Offenses))
	return nil
}

func (g *Guard) save() {
	p := g.statePath()
	if p == "" {
		return
	}
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	g.smu.Lock()
	data, err := json.MarshalIndent(&g.st, "", " ")
	g.smu.Unlock()
	if err == nil {
		err = store.WriteFile(p, data, 0o600)
	}
	if err != nil {
		g.o.Log.Error("sipguard: save blocklist", "err", err)
	}
}

// SetThresholds takes new detector settings (on reload).
func (g *Guard) SetThresholds(t Thresholds, protected []netip.Prefix) {
	g.mu.Lock()
	g.eng.SetThresholds(t)
	g.mu.Unlock()
	g.setNever(t, protected)
	// A source trusted since it was blocked is let go at once (the kernel already lets a
	// trusted peer through first; this clears the block and its record).
	var lift []netip.Prefix
	g.smu.Lock()
	for _, e := range g.st.Blocks {
		if g.neverBlocked(e.Prefix) {
			lift = append(lift, e.Prefix)
		}
	}
	g.smu.Unlock()
	for _, p := range lift {
		// The owner may have lifted it already, with the protections of the same reload.
		if e, ok := g.o.Blocker.Lookup(p); !ok || !sipguardClaim(e, time.Now()) {
			continue
		}
		if _, err := g.o.Blocker.Unblock(p, "sipguard"); err != nil {
			g.o.Log.Warn("sipguard: unblock a newly trusted source", "prefix", p, "err", err)
		}
	}
	g.drop(lift, "it is trusted now")
}

func (g *Guard) setNever(t Thresholds, protected []netip.Prefix) {
	g.pmu.Lock()
	defer g.pmu.Unlock()
	g.o.Protected = protected
	g.never = append(append([]netip.Prefix(nil), protected...), t.Local...)
}

func (g *Guard) protected(a netip.Addr) bool {
	g.pmu.RLock()
	defer g.pmu.RUnlock()
	return inPrefixes(g.o.Protected, a)
}

// neverBlocked reports whether p holds a trusted peer, an admin network or an office host
// (an edited state file must not take one of them with it).
func (g *Guard) neverBlocked(p netip.Prefix) bool {
	g.pmu.RLock()
	defer g.pmu.RUnlock()
	for _, n := range g.never {
		if n.Overlaps(p) {
			return true
		}
	}
	return false
}

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
		if g.eng.local(f.Actor) || g.protected(f.Actor) {
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
	case g.eng.local(f.Actor) || g.protected(f.Actor):
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
		if o == f.Actor || g.protected(o) {
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

// hold asks for a source to be held in the kernel for d.
type hold struct {
	a netip.Addr
	d time.Duration
}

// holdLoop places the short holds: on its own, so that a hold is never queued behind the
// slower work of a block (records, evidence), as it must land before the source's next
// request. A hold claim lapses by itself; a verdict that follows extends it (the owner
// keeps the longest of a source's claims).
func (g *Guard) holdLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case h := <-g.holds:
			p := netip.PrefixFrom(h.a, h.a.BitLen())
			g.smu.Lock()
			_, blocked := g.st.Blocks[p.String()]
			g.smu.Unlock()
			if blocked || h.d <= 0 || g.neverBlocked(p) {
				continue
			}
			req := netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceSIPGuard, By: "hold",
				Reason: "held: close to a verdict, awaiting the PBX's answer", For: h.d}
			if _, err := g.o.Blocker.Block(req); err != nil {
				g.o.Log.Warn("sipguard: hold", "addr", h.a, "err", err)
			}
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

// Run works through findings until ctx ends, then waits for evidence still being written.
// Blocks and the checks against the owner's blocklist run here, one at a time.
func (g *Guard) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	changed, unwatch := g.o.Blocker.Watch()
	defer unwatch()
	g.bg.Add(1)
	go func() { defer g.bg.Done(); g.holdLoop(ctx) }()
	g.reconcile(time.Now()) // what changed before the watch began
	for {
		select {
		case <-ctx.Done():
			g.bg.Wait()
			return nil
		case a := <-g.acts:
			g.act(ctx, a)
		case <-changed:
			g.reconcile(time.Now())
		case now := <-tick.C:
			g.mu.Lock()
			g.eng.Expire(now.Add(-10 * time.Minute))
			g.tcp.expire(now.Add(-streamIdle).UnixNano())
			g.mu.Unlock()
			g.expireEntries(now)
		}
	}
}

// reconcile drops the records of blocks the owner holds no sipguard claim for any more
// (unblocked on the page or the CLI, or expired), and the counters of their sources.
func (g *Guard) reconcile(now time.Time) {
	snap, ready := g.snapshot()
	if !ready {
		return // its list is not in force yet: its first config signals a change
	}
	g.smu.Lock()
	ps := make([]netip.Prefix, 0, len(g.st.Blocks))
	for _, e := range g.st.Blocks {
		ps = append(ps, e.Prefix)
	}
	g.smu.Unlock()
	var gone []netip.Prefix
	for _, p := range ps { // the owner is asked without holding smu
		// A snapshot that lags may still show a claim just lifted: its change signals
		// again. One that does not show a claim just made is confirmed by Lookup.
		if e, ok := snap(p); ok && sipguardClaim(e, now) {
			continue
		}
		if e, ok := g.o.Blocker.Lookup(p); !ok || !sipguardClaim(e, now) {
			gone = append(gone, p)
		}
	}
	g.drop(gone, "")
}

// snapshot returns a lookup in the Blocker's latest snapshot (one that finds nothing
// without one), and whether the Blocker has applied a config: before that, an owner that
// is not running yet would answer from an empty list.
func (g *Guard) snapshot() (func(netip.Prefix) (netcfg.Entry, bool), bool) {
	ss, ok := g.o.Blocker.(stateSnapshot)
	if !ok {
		return func(netip.Prefix) (netcfg.Entry, bool) { return netcfg.Entry{}, false }, true
	}
	st := ss.State()
	if st == nil {
		st = &netcfg.BlockState{}
	}
	return st.Lookup, !st.Applied.IsZero()
}

// lookup finds p's entry in the snapshot, else asks the Blocker.
func (g *Guard) lookup(snap func(netip.Prefix) (netcfg.Entry, bool), p netip.Prefix) (netcfg.Entry, bool) {
	if e, ok := snap(p); ok {
		return e, true
	}
	return g.o.Blocker.Lookup(p)
}

// sipguardClaim reports whether an owner's entry holds a sipguard claim still in force.
func sipguardClaim(e netcfg.Entry, now time.Time) bool {
	for _, c := range e.Claims {
		if c.Source == netcfg.SourceSIPGuard && (c.Permanent() || now.Before(c.Until)) {
			return true
		}
	}
	return false
}

// drop forgets the records of blocks no longer in force and their sources' counters, so a
// source that comes back is judged afresh (its offenses stay, to escalate). why says what
// lifted them ("": unblocked elsewhere, or expired). It reports whether it saved the state.
func (g *Guard) drop(ps []netip.Prefix, why string) bool {
	if len(ps) == 0 {
		return false
	}
	now := time.Now()
	var gone []*Entry
	g.smu.Lock()
	for _, p := range ps {
		if e := g.st.Blocks[p.String()]; e != nil {
			gone = append(gone, e)
		}
	}
	g.smu.Unlock()
	if len(gone) == 0 {
		return false
	}
	// Counters first: once a record is gone, the source's next packet must be judged anew.
	g.mu.Lock()
	for _, e := range gone {
		g.eng.Forget(e.Prefix.Addr())
	}
	g.mu.Unlock()
	g.smu.Lock()
	for _, e := range gone {
		if g.st.Blocks[e.Prefix.String()] == e {
			delete(g.st.Blocks, e.Prefix.String())
		}
	}
	g.smu.Unlock()
	g.save()
	for _, e := range gone {
		w := why
		switch {
		case w != "":
		case !e.Expires.IsZero() && !now.Before(e.Expires):
			w = "its " + e.Reason + " block expired"
		default:
			w = "its " + e.Reason + " block was lifted"
		}
		g.o.Bus.Publish(events.Event{Kind: "sipguard.unblock", Severity: events.Info, Source: "sipguard",
			Message: fmt.Sprintf("%s unblocked: %s", e.Prefix, w), Fields: map[string]string{"addr": e.Prefix.String()}})
	}
	return true
}

// expireEntries drops records whose claim has run out and prunes old offenses.
func (g *Guard) expireEntries(now time.Time) {
	var expired []netip.Prefix
	g.smu.Lock()
	for _, e := range g.st.Blocks {
		if !e.Expires.IsZero() && now.After(e.Expires) {
			expired = append(expired, e.Prefix)
		}
	}
	// Offenses older than the memory no longer escalate anything: without pruning, every
	// address ever blocked would stay in blocks.json, rewritten whole on each block.
	pruned := false
	for k, o := range g.st.Offenses {
		if o == nil || now.Sub(o.Last) > offenseMemory {
			if _, blocked := g.st.Blocks[k]; !blocked {
				delete(g.st.Offenses, k)
				pruned = true
			}
		}
	}
	g.smu.Unlock()
	if saved := g.drop(expired, ""); pruned && !saved {
		g.save()
	}
}

func eventKind(k Kind) string {
	switch k {
	case KindTollFraud, KindCallRate, KindConcurrent:
		return "sipguard.tollfraud"
	case KindFlood:
		return "sipguard.flood"
	case KindScanner:
		return "sipguard.scanner"
	case KindWeakAuth:
		return "sipguard.posture"
	}
	return "sipguard.attack"
}

func (g *Guard) act(ctx context.Context, a action) {
	f := a.f
	fields := map[string]string{"addr": f.Actor.String(), "reason": f.Kind.String(), "detail": a.what, "count": fmt.Sprint(f.Count)}
	if f.Kind == KindWeakAuth {
		g.o.Bus.Publish(events.Event{Kind: "sipguard.posture", Severity: events.Warn, Source: "sipguard", Fields: fields,
			Message: fmt.Sprintf("extension %s authenticates with its own number as auth name: give it a separate, random auth ID", a.what)})
		return
	}
	g.mu.Lock()
	local := g.eng.local(f.Actor) // thresholds change on reload, under g.mu
	g.mu.Unlock()
	if g.protected(f.Actor) {
		g.mu.Lock()
		g.Stats.Alerts++
		g.mu.Unlock()
		g.o.Bus.Publish(events.Event{Kind: "sipguard.peer", Severity: events.Alert, Source: "sipguard", Fields: fields,
			Message: fmt.Sprintf("trusted peer %s misbehaving (%s: %s); trusted peers are never blocked", f.Actor, f.Kind, a.what)})
		return
	}
	if local {
		g.mu.Lock()
		g.Stats.Alerts++
		g.mu.Unlock()
		msg := fmt.Sprintf("%s from office host %s: %s (the kernel drops UDP INVITEs to denied destinations)", f.Kind, f.Actor, a.what)
		g.o.Bus.Publish(events.Event{Kind: eventKind(f.Kind), Severity: events.Alert, Source: "sipguard", Fields: fields, Message: msg})
		g.tollFraudAlert(f, msg)
		return
	}
	switch f.Kind {
	case KindSiteUser:
		g.mu.Lock()
		g.Stats.Alerts++
		ceiling := g.eng.T.SiteCeiling
		g.mu.Unlock()
		msg := fmt.Sprintf("extension %s at %s keeps failing its password (%d times): %s has phones that register, so it is not blocked "+
			"for one user's mistakes (only past %d failures a minute); check that phone's password", a.what, f.Actor, f.Count, f.Actor, ceiling)
		g.o.Bus.Publish(events.Event{Kind: "sipguard.siteuser", Severity: events.Warn, Source: "sipguard", Fields: fields, Message: msg})
		if g.o.Alerts != nil {
			g.o.Alerts.Raise(alerts.KeySIPSiteUser+"/"+f.Actor.String()+"/"+a.what, "sipguard", msg)
		}
		return
	case KindTollFraud, KindCallRate, KindConcurrent:
		msg := fmt.Sprintf("toll-fraud attempt from %s: %s %s", f.Actor, f.Kind, a.what)
		g.o.Bus.Publish(events.Event{Kind: "sipguard.tollfraud", Severity: events.Alert, Source: "sipguard", Fields: fields, Message: msg})
		g.tollFraudAlert(f, msg)
	case KindScanner, KindFlood:
		g.o.Bus.Publish(events.Event{Kind: eventKind(f.Kind), Severity: events.Warn, Source: "sipguard", Fields: fields,
			Message: fmt.Sprintf("%s from %s: %s", f.Kind, f.Actor, a.what)})
	}
	p := netip.PrefixFrom(f.Actor, f.Actor.BitLen())
	if f.Net.IsValid() {
		p = f.Net
	}
	g.block(ctx, f.Actor, p, f.Kind, f.Proof, a.what, a.at)
}

// tollFraudAlert raises a toll-fraud finding as an alert, one per source.
func (g *Guard) tollFraudAlert(f Finding, msg string) {
	switch f.Kind {
	case KindTollFraud, KindCallRate, KindConcurrent:
		if g.o.Alerts != nil {
			g.o.Alerts.Raise(alerts.KeyTollFraud+"/"+f.Actor.String(), "sipguard", msg)
		}
	}
}

// offenseMemory is how long an offense counts towards escalating the next block.
const offenseMemory = 30 * 24 * time.Hour

// netOffenders addresses of one IPv6 /64 with offenses get the /64 blocked.
const netOffenders = 3

// offendersIn counts the other addresses in n with an offense still remembered (smu held).
func (g *Guard) offendersIn(n, self netip.Prefix, now time.Time) int {
	c := 0
	for k, o := range g.st.Offenses {
		q, err := netip.ParsePrefix(k)
		if err == nil && q != self && q.IsSingleIP() && n.Contains(q.Addr()) && o != nil && now.Sub(o.Last) <= offenseMemory {
			c++
		}
	}
	return c
}

// coveredByBlock reports whether a block of sipguard's still running on a wider network
// holds p (smu held).
func (g *Guard) coveredByBlock(p netip.Prefix, now time.Time) bool {
	for _, e := range g.st.Blocks {
		if e.Prefix.Bits() < p.Bits() && e.Prefix.Contains(p.Addr()) && (e.Expires.IsZero() || now.Before(e.Expires)) {
			return true
		}
	}
	return false
}

// nextTimeout returns the block duration for an address's next offense and its number.
func (g *Guard) nextTimeout(key string, now time.Time) (time.Duration, int) {
	o := g.st.Offenses[key]
	if o == nil || now.Sub(o.Last) > offenseMemory {
		o = &offense{}
		g.st.Offenses[key] = o
	}
	o.N++
	o.Last = now
	i := o.N - 1
	if i >= len(g.o.BlockTimes) {
		i = len(g.o.BlockTimes) - 1
	}
	return g.o.BlockTimes[i], o.N
}

// block blocks p (the address a, or a network holding it) for the offense of a.
func (g *Guard) block(ctx context.Context, a netip.Addr, p netip.Prefix, k Kind, proof Proof, what string, seen time.Time) {
	if g.neverBlocked(p) {
		return // act checks first; this is the last line, whatever the path
	}
	g.smu.Lock()
	if p.IsSingleIP() && a.Is6() {
		// Several addresses of one /64 offending: one host rotating through its network.
		if n, _ := a.Prefix(64); !g.neverBlocked(n) && g.offendersIn(n, p, seen) >= netOffenders-1 {
			p, what = n, what+" (several addresses of "+n.String()+")"
		}
	}
	if g.coveredByBlock(p, seen) {
		g.smu.Unlock()
		return // its network is blocked already
	}
	key := p.String()
	if old := g.st.Blocks[key]; old != nil && (old.Expires.IsZero() || seen.Before(old.Expires)) {
		// Already blocked (a finding queued before the first block took effect, or after
		// its source record was evicted): one offense, not one per packet in flight.
		g.smu.Unlock()
		return
	}
	d, n := g.o.UnprovenBlockTime, 0
	if proof != ProofNone {
		d, n = g.nextTimeout(key, seen)
	} else {
		d = min(d, g.o.BlockTimes[0])
	}
	g.smu.Unlock()
	now := time.Now()
	e := &Entry{Prefix: p, Reason: k.String(), Detail: what, Since: now, Expires: now.Add(d), Offense: n,
		Proven: proof != ProofNone, Proof: proof.String()}
	base := ""
	if g.o.StateDir != "" {
		base = filepath.Join(g.o.StateDir, "evidence", now.UTC().Format("20060102T150405Z")+"-"+strings.ReplaceAll(a.String(), ":", "_"))
		e.Evidence, e.Report = base+".pcapng", base+".txt"
	}
	// The entry goes in first, so a listing never shows the kernel's entry without its reason.
	g.smu.Lock()
	g.st.Blocks[key] = e
	g.smu.Unlock()
	req := netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceSIPGuard, By: k.String(), Reason: k.String() + ": " + what + proofNote(proof), For: d}
	if _, err := g.o.Blocker.Block(req); err != nil {
		g.refused(a, k, what, key, n > 0, err)
		return
	}
	if g.o.ForgetFlows != nil {
		if err := g.o.ForgetFlows(a); err != nil {
			g.o.Log.Warn("sipguard: delete conntrack entries", "addr", a, "err", err)
		}
	}
	g.mu.Lock()
	g.Stats.Blocks++
	g.mu.Unlock()
	g.save()
	g.o.Log.Info("sipguard: blocked", "addr", a, "reason", k, "detail", what, "for", d, "proven", e.Proven, "latency", time.Since(seen))
	g.o.Bus.Publish(events.Event{Kind: "sipguard.block", Severity: events.Alert, Source: "sipguard",
		Message: fmt.Sprintf("blocked %s for %s: %s (%s)%s", a, d, k, what, offenseNote(n, proof)),
		Fields: map[string]string{"addr": a.String(), "reason": k.String(), "detail": what, "for": d.String(), "evidence": e.Evidence,
			"proven": fmt.Sprint(e.Proven)}})
	if base != "" {
		g.bg.Add(1)
		go func() { defer g.bg.Done(); g.evidence(ctx, e, base, seen) }()
	}
}

// refused undoes the record and offense of a block the owner did not make. A protected
// source is an alert and stays marked done (asking again would be refused again); after
// any other failure the source's next packet tries again.
func (g *Guard) refused(a netip.Addr, k Kind, what, key string, counted bool, err error) {
	g.smu.Lock()
	delete(g.st.Blocks, key)
	if o := g.st.Offenses[key]; counted && o != nil && o.N > 0 {
		o.N--
	}
	g.smu.Unlock()
	fields := map[string]string{"addr": a.String(), "reason": k.String(), "detail": what}
	if errors.Is(err, netcfg.ErrProtected) {
		g.mu.Lock()
		g.Stats.Alerts++
		g.mu.Unlock()
		g.o.Log.Warn("sipguard: block refused: protected", "addr", a, "err", err)
		g.o.Bus.Publish(events.Event{Kind: "sipguard.protected", Severity: events.Alert, Source: "sipguard", Fields: fields,
			Message: fmt.Sprintf("%s from %s (%s), which the box depends on and never blocks: %v", k, a, what, err)})
		return
	}
	g.mu.Lock()
	g.eng.markDone(a, false)
	g.mu.Unlock()
	g.o.Log.Error("sipguard: block", "addr", a, "err", err)
	g.o.Bus.Publish(events.Event{Kind: "sipguard.error", Severity: events.Alert, Source: "sipguard", Fields: fields,
		Message: fmt.Sprintf("could not block %s (%s): %v", a, k, err)})
}

// captureEvent tells that capture on an interface paused or resumed.
func (g *Guard) captureEvent(ifname string, sev events.Severity, msg string) {
	if sev == events.Info {
		g.o.Log.Info("sipguard: "+msg, "interface", ifname)
	} else {
		g.o.Log.Warn("sipguard: "+msg, "interface", ifname)
	}
	g.o.Bus.Publish(events.Event{Kind: "sipguard.capture", Severity: sev, Source: "sipguard", Message: msg,
		Fields: map[string]string{"interface": ifname}})
}

// evidence waits for the next few seconds of the source's packets, then writes the pcap and
// the abuse report. It runs beside detection and never holds it up.
func (g *Guard) evidence(ctx context.Context, e *Entry, base string, seen time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(g.o.EvidenceAfter):
	}
	a := e.Prefix.Addr()
	g.mu.Lock()
	pkts := g.ring.of(a, 64)
	counts, first, last, _ := g.eng.Counts(a)
	g.mu.Unlock()
	var buf strings.Builder
	if err := WritePcapng(&buf, pkts); err != nil {
		g.o.Log.Error("sipguard: evidence", "err", err)
		return
	}
	if err := store.WriteFile(base+".pcapng", []byte(buf.String()), 0o600); err != nil {
		g.o.Log.Error("sipguard: evidence", "err", err)
		return
	}
	sum := sha256.Sum256([]byte(buf.String()))
	reg, rdap := RIR(a)
	r := &Report{Offender: a, Reason: e.Reason, Detail: e.Detail, Registry: reg, RDAP: rdap, Counts: counts,
		First: first, Last: last, BlockedAt: e.Since, BlockedFor: e.Expires.Sub(e.Since), Pcap: filepath.Base(base + ".pcapng"),
		PcapSHA256: hex.EncodeToString(sum[:]), Box: g.o.Site}
	if first.IsZero() {
		r.First, r.Last = seen, seen
	}
	for _, p := range pkts {
		if len(r.Samples) == 3 {
			break
		}
		if ip, ok := decodeIP(p.Data, g.o.TLSPort); ok && ip.src == a && len(ip.payload) > 0 {
			r.Samples = append(r.Samples, printable(ip.payload[:min(len(ip.payload), 600)]))
		}
	}
	if g.o.Abuse != nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r.AbuseContact, _ = g.o.Abuse.Contact(lctx, a)
		cancel()
	}
	if err := store.WriteFile(base+".txt", []byte(r.Text()), 0o600); err != nil {
		g.o.Log.Error("sipguard: abuse report", "err", err)
	}
	g.pruneEvidence(maxEvidenceFiles)
}

// maxEvidenceFiles bounds the evidence directory (a pcap and a report per block): a botnet
// of many addresses must not fill the appliance's flash.
const maxEvidenceFiles = 2000

// pruneEvidence removes the oldest evidence beyond max files, except that of blocks still in
// force. Names start with the block's UTC time, so name order is age order.
func (g *Guard) pruneEvidence(max int) {
	dir := filepath.Join(g.o.StateDir, "evidence")
	ents, err := os.ReadDir(dir) // sorted by name
	if err != nil || len(ents) <= max {
		return
	}
	keep := map[string]bool{}
	g.smu.Lock()
	for _, e := range g.st.Blocks {
		keep[e.Evidence], keep[e.Report] = true, true
	}
	g.smu.Unlock()
	for _, e := range ents[:len(ents)-max] {
		p := filepath.Join(dir, e.Name())
		if keep[p] || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			g.o.Log.Warn("sipguard: prune evidence", "err", err)
		}
	}
}

// Blocked lists sipguard's blocks, sorted by address, with the owner's view of each:
// whether it is in force, until when (the longest claim on it) and, when the owner counts
// them, the packets the kernel dropped.
func (g *Guard) Blocked() []Entry {
	g.smu.Lock()
	list := make([]Entry, 0, len(g.st.Blocks))
	for _, e := range g.st.Blocks {
		list = append(list, *e)
	}
	g.smu.Unlock()
	var packets map[netip.Prefix]uint64
	if pc, ok := g.o.Blocker.(packetCounter); ok {
		packets = pc.Packets()
	}
	now := time.Now()
	snap, _ := g.snapshot()
	for i := range list {
		e := &list[i]
		oe, ok := g.lookup(snap, e.Prefix)
		e.InKernel = ok
		if !ok {
			continue
		}
		e.Expires = oe.Until()
		if !e.Expires.IsZero() {
			e.Remaining = e.Expires.Sub(now).Round(time.Second).String()
		}
		e.Dropped = packets[e.Prefix]
	}
	slices.SortFunc(list, func(a, b Entry) int { return netcfg.ComparePrefix(a.Prefix, b.Prefix) })
	return list
}

// Snapshot returns the running totals and number of sources tracked.
func (g *Guard) Snapshot() (Stats, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Stats, g.eng.Sources()
}

// ForgetPersisted removes a block from the state file of a Guard that is not running (the
// CLI's unblock without a daemon); it reports whether there was one.
func ForgetPersisted(dir string, p netip.Prefix) (bool, error) {
	path := filepath.Join(dir, "blocks.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var st persisted
	if err := json.Unmarshal(data, &st); err != nil {
		return false, fmt.Errorf("sipguard: %s: %w", path, err)
	}
	k := p.Masked().String()
	if _, ok := st.Blocks[k]; !ok {
		return false, nil
	}
	delete(st.Blocks, k)
	data, err = json.MarshalIndent(&st, "", " ")
	if err != nil {
		return false, err
	}
	return true, store.WriteFile(path, data, 0o600)
}
