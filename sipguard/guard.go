package sipguard

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/events"
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
	// Protects says whether a block of p would be refused, and why: the one "never block"
	// list (the LAN, trusted peers, admin networks, what the box depends on), asked rather
	// than copied so that sipguard and the owner cannot disagree.
	Protects(p netip.Prefix) (why string, ok bool)
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
	StateDir    string // blocks.json and evidence/ go here ("" keeps nothing)
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
	if err := g.load(); err != nil {
		return nil, err
	}
	return g, nil
}

// SetThresholds takes new detector settings (on reload).
func (g *Guard) SetThresholds(t Thresholds) {
	g.mu.Lock()
	g.eng.SetThresholds(t)
	g.mu.Unlock()
	// A source trusted since it was blocked is let go at once (the kernel already lets a
	// trusted peer through first; this clears the block and its record).
	var ps []netip.Prefix
	g.smu.Lock()
	for _, e := range g.st.Blocks {
		ps = append(ps, e.Prefix)
	}
	g.smu.Unlock()
	var lift []netip.Prefix
	for _, p := range ps { // the owner is asked without holding smu
		if slices.ContainsFunc(t.Trusted, p.Overlaps) || g.neverBlocked(p) {
			lift = append(lift, p)
		}
	}
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

// neverBlocked reports whether the owner would refuse a block of p: it holds an office
// host, a trusted peer, an admin network or something else the box depends on (an edited
// state file must not take one of them with it).
func (g *Guard) neverBlocked(p netip.Prefix) bool {
	_, ok := g.o.Blocker.Protects(p)
	return ok
}

// Snapshot returns the running totals and number of sources tracked.
func (g *Guard) Snapshot() (Stats, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Stats, g.eng.Sources()
}
