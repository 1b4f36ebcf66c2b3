package netcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// OwnerOptions configure the owner of the box's kernel state.
type OwnerOptions struct {
	Firewall *Firewall     // the kernel (New(0)); the owner keeps its own lasting connection to it
	StateDir string        // blocklist.json and blocklist/ (feed lists) go here ("" keeps nothing)
	Bus      *events.Bus   // firewall.* events (drift repaired, a write that failed)
	Alerts   *alerts.Store // raised while the kernel refuses what the owner writes
	Log      *slog.Logger
	Links    bool          // also own the LAN's and static uplinks' links, addresses and default routes (ApplyLinks)
	Check    time.Duration // how often the kernel is compared with the desired state (default 2s)
	// ResolvConf lists DNS servers to protect ("" for none; the daemon gives /etc/resolv.conf).
	ResolvConf string
	// NoReplyMarks leaves the reply-routing chains out: a kernel without conntrack marks
	// refuses the whole ruleset with them, and one without policy routing has no use for them.
	NoReplyMarks bool
}

// Owner is the one writer of the appliance's nftables table (inet appliance) and, with
// OwnerOptions.Links, of the LAN's and static uplinks' addresses, their default routes and
// the forwarding sysctls. Package wan writes the active route, the reply-routing tables and
// rules and the DHCP uplinks' addresses and routes, and package vpn its WireGuard link: the
// package doc has the table of who writes what. A single goroutine (Run) holds the desired
// state — the ruleset from the config, the blocklist with every claim on each entry, the
// protected networks — and reconciles the kernel to it; everything else sends it typed
// requests, which it serves one at a time.
type Owner struct {
	o    OwnerOptions
	reqs chan request
	snap atomic.Pointer[BlockState]

	wmu      sync.Mutex
	watchers map[chan struct{}]struct{}

	pmu       sync.Mutex // the packet counter cache
	packets   map[netip.Prefix]uint64
	packetsAt time.Time
	reader    *Firewall // its own socket: counters are read beside the owner's writes

	// Everything below is the loop's alone.
	fw         *Firewall
	bl         *blocklist
	loaded     bool // a saved blocklist was found (otherwise the kernel's is taken over once)
	cfg        *config.Config
	table      *Table
	prot       []Protection            // from the config
	dyn        map[string][]Protection // learned at run time
	lim        limits
	nets       map[netip.Prefix]want // the networks written to the kernel (collapsed)
	counts     BlockCounts
	gen        uint32 // ruleset generation after our last write; 0: unknown
	applied    time.Time
	repairs    int
	checks     int  // generation checks since start
	rewrites   int  // whole blocklist written again since start
	settled    bool // a check found the kernel as the owner left it (said once)
	lastFix    string
	lastErr    string
	dirty      bool // claims changed since the last save
	savedAt    time.Time
	saveSeq    uint64      // snapshots handed to writeState
	saving     atomic.Bool // a periodic save is being written
	saveMu     sync.Mutex  // one writer of blocklist.json at a time, newest wins
	savedSeq   uint64      // under saveMu
	saveFailed atomic.Bool
	needWrite  bool      // the kernel's block sets were created empty: write every element
	releaseAt  time.Time // a big load left tens of MB of garbage: give it back then

	rmu        sync.Mutex
	given      *config.Config          // the last SetConfig's, under rmu
	resolved   map[string][]netip.Addr // SetResolved's, under rmu
	cfgSeq     uint64                  // under rmu
	appliedSeq uint64                  // the loop's
	appliedErr error                   // the loop's: the outcome of appliedSeq's config
}

type request struct {
	fn   func()
	done chan struct{}
}

// ErrOwnerStopped means the owner's goroutine did not take a request in time.
var ErrOwnerStopped = errors.New("netcfg: the firewall owner is not running")

// NewOwner loads the saved blocklist; Run starts reconciling.
func NewOwner(o OwnerOptions) (*Owner, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Bus == nil {
		o.Bus = events.New(100)
	}
	if o.Check <= 0 {
		o.Check = 2 * time.Second
	}
	if o.Firewall == nil {
		o.Firewall = New(0)
	}
	bl, found, err := loadBlocklist(o.StateDir, time.Now())
	if err != nil {
		return nil, err
	}
	w := &Owner{o: o, reqs: make(chan request), watchers: map[chan struct{}]struct{}{},
		fw: o.Firewall.Lasting(), reader: New(o.Firewall.netns), bl: bl, loaded: found,
		dyn: map[string][]Protection{}, resolved: map[string][]netip.Addr{}, nets: map[netip.Prefix]want{}, lim: limits{16, 32}}
	w.snap.Store(&BlockState{Widest4: 16, Widest6: 32})
	return w, nil
}

// Run serves requests and repairs drift until ctx ends; the kernel state stays when it returns.
func (w *Owner) Run(ctx context.Context) error {
	defer w.fw.Close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastCheck := time.Now()
	for {
		select {
		case <-ctx.Done():
			w.save(true)
			return nil
		case r := <-w.reqs:
			w.serve(r)
		case now := <-tick.C:
			w.guard(func() {
				w.expire(now)
				if w.table != nil && now.Sub(lastCheck) >= w.o.Check {
					lastCheck = now
					w.reconcile()
				}
				w.save(false)
			})
			w.publish()
			if !w.releaseAt.IsZero() && now.After(w.releaseAt) {
				w.releaseAt = time.Time{}
				debug.FreeOSMemory()
			}
		}
	}
}

// bigLoad is the size of a load (a feed, a rewrite) whose garbage is given back to the OS.
const bigLoad = 50000

// giveBack returns a big load's garbage (tens of MB) to the OS rather than carry it on a box
// with little memory: now, and a second later, once the sender has let go of the list it
// parsed too.
func (w *Owner) giveBack() {
	debug.FreeOSMemory()
	w.releaseAt = time.Now().Add(time.Second)
}

// serve runs one request and publishes its outcome before the caller goes on (so State
// shows it); a panic in it is logged and ends only that request.
func (w *Owner) serve(r request) {
	defer close(r.done)
	w.guard(r.fn)
	w.publish()
}

func (w *Owner) guard(fn func()) {
	defer func() {
		if v := recover(); v != nil {
			w.o.Log.Error("netcfg: owner: panic", "panic", v, "stack", string(debug.Stack()))
			w.lastErr = fmt.Sprint("internal error: ", v)
		}
	}()
	fn()
}

// do runs fn on the owner's goroutine and waits for it.
func (w *Owner) do(fn func()) error {
	r := request{fn: fn, done: make(chan struct{})}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case w.reqs <- r:
	case <-t.C:
		return ErrOwnerStopped
	}
	<-r.done
	return nil
}

func (w *Owner) fail(err error) {
	msg := err.Error()
	if msg != w.lastErr {
		w.o.Log.Error("netcfg: kernel write failed", "err", err)
		w.o.Bus.Publish(events.Event{Kind: "firewall.error", Severity: events.Alert, Source: "firewall", Message: "the firewall could not be written: " + msg})
	}
	w.lastErr = msg
	if w.o.Alerts != nil {
		w.o.Alerts.Raise("firewall.write", "firewall", "the firewall could not be written: "+msg)
	}
}

func (w *Owner) ok() {
	if w.lastErr != "" && w.o.Alerts != nil {
		w.o.Alerts.Clear("firewall.write")
	}
	w.lastErr = ""
}

func (w *Owner) event(sev events.Severity, kind, msg string, p netip.Prefix) {
	e := events.Event{Kind: kind, Severity: sev, Source: "firewall", Message: msg}
	if p.IsValid() {
		e.Fields = map[string]string{"prefix": p.String()}
	}
	w.o.Bus.Publish(e)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
