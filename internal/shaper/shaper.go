// Package shaper shapes each uplink's upload just under the line's rate, voice first: HTB classes picked by nftables' meta priority (netcfg/voice.go), one owner that repairs them.
package shaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	tc "github.com/florianl/go-tc"
	"github.com/florianl/go-tc/core"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/config"
)

// Link is one shaped uplink.
type Link struct {
	Name      string // shown to people: "FTTC"
	Interface string
	Rate      uint64 // the line's upload in bit/s (fixed); the box shapes to 95 % of it
	Auto      bool   // follow the line between Min and Max (autorate)
	Min, Max  uint64
}

// LinksFrom takes the uplinks with an upload rate from the configuration.
func LinksFrom(c *config.Config) []Link {
	var out []Link
	for _, u := range c.Uplink.All() {
		if u.Upload.IsZero() {
			continue
		}
		out = append(out, Link{Name: u.Name, Interface: u.Interface, Rate: u.Upload.Bits, Auto: u.Upload.Auto,
			Min: u.UploadMin.Bits, Max: u.UploadMax.Bits})
	}
	return out
}

// Options configure a Shaper.
type Options struct {
	Links []Link
	// NetNS is the network namespace to shape in (a file descriptor); 0 is the caller's.
	NetNS int
	// FQCodel puts fq_codel under the classes instead of short pfifos (where the kernel has it).
	FQCodel bool
	// RTT gives the last round trip through the interface of each probe target (wan's
	// probes) that answered lately; autorate needs it.
	RTT func(iface string) map[string]Sample
	// Every is how often the tree is compared with the kernel's and repaired (default 2s);
	// AutoEvery how often autorate looks at the round trips (default 500ms).
	Every, AutoEvery time.Duration
	Log              *slog.Logger
}

// Shaper owns the qdiscs of the shaped uplinks: it makes them, puts them back when someone
// removes or changes them (or the modem's interface comes back), follows the line with
// autorate, and removes them when it stops.
type Shaper struct {
	o     Options
	mu    sync.Mutex
	links []*link
	// kick asks the loop to reconcile at once (a reload).
	kick chan struct{}
}

type link struct {
	Link
	auto     *autorate
	ifindex  uint32 // where the tree was last made; 0: not made
	line     uint64 // the line rate shaped to now (Rate, or autorate's)
	repairs  int
	err      string
	lastSent uint64 // bytes through class 1:1 at lastAt
	lastAt   time.Time
	sentBits uint64 // bit/s through class 1:1 in the last interval
	classes  []ClassStatus
}

// New makes a Shaper; it touches nothing until Run.
func New(o Options) *Shaper {
	if o.Every <= 0 {
		o.Every = 2 * time.Second
	}
	if o.AutoEvery <= 0 {
		o.AutoEvery = 500 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Shaper{o: o, kick: make(chan struct{}, 1)}
	s.links = makeLinks(o.Links, nil)
	return s
}

// makeLinks makes the links' state, keeping what old knew of the same interface.
func makeLinks(ls []Link, old []*link) []*link {
	var out []*link
	for _, l := range ls {
		n := &link{Link: l, line: l.Rate}
		var prev *link
		for _, o := range old {
			if o.Interface == l.Interface {
				prev = o
				n.repairs = o.repairs
				if l.Auto && o.auto != nil && o.Min == l.Min && o.Max == l.Max {
					n.auto = o.auto
				}
			}
		}
		if l.Auto {
			if n.auto == nil {
				n.auto = newAutorate(l.Min, l.Max)
			}
			n.line = n.auto.rate
		}
		// The same tree stays as it is; a new rate is written at the next pass (not a repair).
		if prev != nil && prev.line == n.line {
			n.ifindex = prev.ifindex
		}
		out = append(out, n)
	}
	return out
}

// Reload takes new links; interfaces no longer shaped lose their tree at the next pass.
func (s *Shaper) Reload(ls []Link) {
	s.mu.Lock()
	gone := s.links
	s.links = makeLinks(ls, s.links)
	s.mu.Unlock()
	if h, err := s.handle(); err == nil {
		for _, g := range gone {
			if !s.shapes(g.Interface) && g.ifindex != 0 {
				if err := remove(h, g.ifindex, rootHandle, tc.HandleRoot, "htb"); err != nil {
					s.o.Log.Warn("shaper: remove", "interface", g.Interface, "err", err)
				}
			}
		}
		h.Close()
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Shaper) shapes(iface string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		if l.Interface == iface {
			return true
		}
	}
	return false
}

var clockOnce sync.Once

// open opens a traffic-control socket in the shaper's namespace.
func (s *Shaper) open() (*tc.Tc, error) {
	clockOnce.Do(func() {
		if core.InitializeClock() != nil {
			core.SetClockParameters(1000, 15.625) // every kernel since 2.6.31 (/proc/net/psched)
		}
	})
	c, err := tc.Open(&tc.Config{NetNS: s.o.NetNS})
	if err != nil {
		return nil, fmt.Errorf("shaper: open rtnetlink: %w", err)
	}
	return c, nil
}

// Run makes and keeps the trees until ctx ends, then removes them.
func (s *Shaper) Run(ctx context.Context) error {
	c, err := s.open()
	if err != nil {
		return err
	}
	defer c.Close()
	h, err := s.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	defer s.removeAll(h)
	auto := time.NewTicker(s.o.AutoEvery)
	defer auto.Stop()
	lastFull := time.Time{}
	for {
		now := time.Now()
		full := now.Sub(lastFull) >= s.o.Every
		if full {
			lastFull = now
		}
		s.pass(c, h, now, full)
		select {
		case <-ctx.Done():
			return nil
		case <-auto.C:
		case <-s.kick:
			lastFull = time.Time{}
		}
	}
}

func (s *Shaper) handle() (*netlink.Handle, error) {
	if s.o.NetNS == 0 {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	return netlink.NewHandleAt(netns.NsHandle(s.o.NetNS), unix.NETLINK_ROUTE)
}

// pass reads the classes' counters, runs autorate, and on a full pass compares each tree
// with the kernel's and repairs it.
func (s *Shaper) pass(c *tc.Tc, h *netlink.Handle, now time.Time, full bool) {
	s.mu.Lock()
	links := append([]*link(nil), s.links...)
	s.mu.Unlock()
	for _, l := range links {
		s.passLink(c, h, l, now, full)
	}
}

func (s *Shaper) passLink(c *tc.Tc, h *netlink.Handle, l *link, now time.Time, full bool) {
	nl, err := h.LinkByName(l.Interface)
	if err != nil {
		s.mu.Lock()
		l.err, l.ifindex = "the interface is absent (the tree is made again when it comes back)", 0
		s.mu.Unlock()
		return
	}
	idx := uint32(nl.Attrs().Index)
	stats, err := classStats(c, idx)
	if err == nil {
		s.count(l, stats, now)
	}
	changed := false
	s.mu.Lock()
	made := l.ifindex == idx
	s.mu.Unlock()
	if l.auto != nil && made {
		rtts := map[string]Sample(nil)
		if s.o.RTT != nil {
			rtts = s.o.RTT(l.Interface)
		}
		s.mu.Lock()
		before := l.line
		l.line = l.auto.step(now, rtts, l.sentBits)
		changed = l.line != before
		s.mu.Unlock()
		if changed {
			s.o.Log.Debug("shaper: autorate", "uplink", l.Name, "interface", l.Interface, "from", before, "to", l.line, "sent", l.sentBits)
		}
	}
	if !full && !changed && made {
		return // a new interface (the modem came back) gets its tree at once
	}
	rate := shaped(l.line)
	err = check(c, idx, rate, s.o.FQCodel)
	if err == nil {
		s.setApplied(l, idx)
		return
	}
	if errors.Is(err, errDrift) && made && !changed {
		s.mu.Lock()
		l.repairs++
		n := l.repairs
		s.mu.Unlock()
		// Bounded: whoever keeps changing it does not fill the log (the count is in /metrics).
		if n&(n-1) == 0 {
			s.o.Log.Warn("shaper: the uplink's queue was changed by someone else; putting it back", "interface", l.Interface, "found", err.Error(), "repairs", n)
		}
	}
	if err := tree(c, h, idx, rate, s.o.FQCodel); err != nil {
		s.mu.Lock()
		same := l.err == err.Error()
		l.err = err.Error()
		s.mu.Unlock()
		if !same { // once per new failure, not every pass
			s.o.Log.Error("shaper: make the tree", "interface", l.Interface, "err", err)
		}
		return
	}
	s.setApplied(l, idx)
}

func (s *Shaper) setApplied(l *link, idx uint32) {
	s.mu.Lock()
	l.ifindex, l.err = idx, ""
	s.mu.Unlock()
}

// count keeps the classes' counters and the rate sent through class 1:1.
func (s *Shaper) count(l *link, st map[uint32]ClassStatus, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	top := st[topClass]
	if !l.lastAt.IsZero() && top.Bytes >= l.lastSent {
		if dt := now.Sub(l.lastAt).Seconds(); dt > 0.05 {
			l.sentBits = uint64(float64(top.Bytes-l.lastSent) * 8 / dt)
		}
	}
	l.lastSent, l.lastAt = top.Bytes, now
	l.classes = l.classes[:0]
	for _, cl := range Classes {
		cs := st[cl.Handle]
		cs.Name = cl.Name
		l.classes = append(l.classes, cs)
	}
}

// removeAll takes every tree away (the kernel's default qdisc comes back).
func (s *Shaper) removeAll(h *netlink.Handle) {
	s.mu.Lock()
	links := append([]*link(nil), s.links...)
	s.mu.Unlock()
	for _, l := range links {
		if l.ifindex == 0 {
			continue
		}
		if err := remove(h, l.ifindex, rootHandle, tc.HandleRoot, "htb"); err != nil {
			s.o.Log.Warn("shaper: remove", "interface", l.Interface, "err", err)
		}
		s.mu.Lock()
		l.ifindex = 0
		s.mu.Unlock()
	}
}

// Status is one shaped uplink's state.
type Status struct {
	Name      string        `json:"name"`
	Interface string        `json:"interface"`
	Auto      bool          `json:"auto"`
	Line      uint64        `json:"line_bps"`   // the line rate shaped to now
	Rate      uint64        `json:"shaped_bps"` // what the box sends at most (95 % of Line)
	Sent      uint64        `json:"sent_bps"`   // what it sent in the last interval
	Applied   bool          `json:"applied"`
	Repairs   int           `json:"repairs"` // trees put back after someone changed them
	Error     string        `json:"error,omitempty"`
	Classes   []ClassStatus `json:"classes"`
}

// ClassStatus are one class's counters.
type ClassStatus struct {
	Name    string `json:"name"`
	Bytes   uint64 `json:"bytes"`
	Packets uint64 `json:"packets"`
	Drops   uint64 `json:"drops"`
	Backlog uint64 `json:"backlog_bytes"`
}

// Status returns each shaped uplink's state.
func (s *Shaper) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.links))
	for _, l := range s.links {
		out = append(out, Status{Name: l.Name, Interface: l.Interface, Auto: l.Auto, Line: l.line, Rate: shaped(l.line),
			Sent: l.sentBits, Applied: l.ifindex != 0 && l.err == "", Repairs: l.repairs, Error: l.err,
			Classes: append([]ClassStatus(nil), l.classes...)})
	}
	return out
}

// classStats reads the counters of the HTB classes on ifindex, by handle.
func classStats(c *tc.Tc, ifindex uint32) (map[uint32]ClassStatus, error) {
	cs, err := c.Class().Get(&tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex})
	if err != nil {
		return nil, fmt.Errorf("list classes: %w", err)
	}
	out := map[uint32]ClassStatus{}
	for _, o := range cs {
		// TCA_STATS (struct tc_stats), which the kernel still sends: go-tc v0.4.8 reads the
		// nested TCA_STATS2 as a flat struct and gets it wrong.
		if o.Stats != nil {
			out[o.Handle] = ClassStatus{Bytes: o.Stats.Bytes, Packets: uint64(o.Stats.Packets), Drops: uint64(o.Stats.Drops), Backlog: uint64(o.Stats.Backlog)}
		}
	}
	return out, nil
}
