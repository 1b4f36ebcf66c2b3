package voicemove

import (
	"fmt"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/officeedge/appliance/netcfg"
)

// droppedRules are the rules of table inet appliance (by chain, then comment) whose counters
// count what the firewall drops that came in from the internet, each packet once: the block
// sets' drops before conntrack, and the notes of the input and forward chains' final drop
// (netcfg/dropped.go: its rule counters count every packet, also when a dropped set is full
// and notes no more). A test builds netcfg's ruleset to check that these names still exist.
var droppedRules = map[string][]string{
	"blocklist": {"blocked address", "blocked network"},
	"input":     {"note dropped IPv4 sources", "note dropped IPv6 sources"},
	"forward":   {"note dropped IPv4 sources", "note dropped IPv6 sources"},
}

// Counters are the kernel's running totals the rates are made of.
type Counters struct {
	At      time.Time
	Dropped uint64            // bytes dropped at the firewall that came in from the internet
	RX      map[string]uint64 // bytes received, by uplink interface (0: no such link now)
}

// reader reads Counters: the firewall's over its own lasting netlink socket (one goroutine
// uses it), the links' over rtnetlink.
type reader struct{ fw *netcfg.Firewall }

func newReader() *reader { return &reader{fw: netcfg.New(0).Lasting()} }

func (r *reader) close() { r.fw.Close() }

// read takes the counters now; a table not (yet) in the kernel counts nothing dropped.
func (r *reader) read(ifaces []string, now time.Time) (Counters, error) {
	c := Counters{At: now, RX: make(map[string]uint64, len(ifaces))}
	for chain, comments := range droppedRules {
		rules, err := r.fw.RuleCounters(chain)
		if err != nil {
			return c, fmt.Errorf("voicemove: %w", err)
		}
		for _, rc := range rules {
			if slices.Contains(comments, rc.Comment) {
				c.Dropped += rc.Bytes
			}
		}
	}
	for _, name := range ifaces {
		if l, err := netlink.LinkByName(name); err == nil && l.Attrs().Statistics != nil {
			c.RX[name] = l.Attrs().Statistics.RxBytes
		}
	}
	return c, nil
}

// window keeps the last few Counters and gives rates over them.
type window struct {
	span time.Duration
	cs   []Counters
}

// add appends c and drops what is older than the span (keeping one before it, the start of
// the rates). A counter that went backwards (the ruleset made again, a link re-made) starts
// the window afresh.
func (w *window) add(c Counters) {
	if n := len(w.cs); n > 0 {
		last := w.cs[n-1]
		back := c.Dropped < last.Dropped || !c.At.After(last.At)
		for k, v := range c.RX {
			back = back || v < last.RX[k]
		}
		if back {
			w.cs = w.cs[:0]
		}
	}
	w.cs = append(w.cs, c)
	for len(w.cs) > 2 && c.At.Sub(w.cs[1].At) >= w.span {
		w.cs = w.cs[1:]
	}
}

// rates are the bit rates over the window: dropped, and received by each interface. ok is
// false until the window holds two reads.
func (w *window) rates() (dropped float64, rx map[string]float64, ok bool) {
	if len(w.cs) < 2 {
		return 0, nil, false
	}
	a, b := w.cs[0], w.cs[len(w.cs)-1]
	dt := b.At.Sub(a.At).Seconds()
	rx = make(map[string]float64, len(b.RX))
	for k, v := range b.RX {
		rx[k] = float64(v-min(a.RX[k], v)) * 8 / dt
	}
	return float64(b.Dropped-a.Dropped) * 8 / dt, rx, true
}

// droppedOn is how much of the dropped rate came in on interface line, at least: what was
// dropped beyond all that the other uplinks received. The firewall's counters do not say
// which uplink a packet came in on, but a line cannot have given more than it received; on
// a flood of the active line (the modem idle by comparison) the bound is close to the truth.
func droppedOn(line string, dropped float64, rx map[string]float64) float64 {
	for k, v := range rx {
		if k != line {
			dropped -= v
		}
	}
	return max(dropped, 0)
}
