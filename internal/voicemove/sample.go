package voicemove

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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

// reader reads Counters over netlink; it keeps one nftables socket.
type reader struct{ nft *nftables.Conn }

func newReader() (*reader, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("voicemove: nftables: %w", err)
	}
	return &reader{nft: c}, nil
}

func (r *reader) close() { _ = r.nft.CloseLasting() }

// read takes the counters now; a table not (yet) in the kernel counts nothing dropped.
func (r *reader) read(ifaces []string, now time.Time) (Counters, error) {
	c := Counters{At: now, RX: make(map[string]uint64, len(ifaces))}
	tbl := &nftables.Table{Name: netcfg.TableName, Family: nftables.TableFamilyINet}
	for chain, comments := range droppedRules {
		rules, err := r.nft.GetRules(tbl, &nftables.Chain{Name: chain, Table: tbl})
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return c, fmt.Errorf("voicemove: read the %s chain's counters: %w", chain, err)
		}
		for _, rule := range rules {
			comment, _ := userdata.GetString(rule.UserData, userdata.TypeComment)
			if !slices.Contains(comments, comment) {
				continue
			}
			for _, e := range rule.Exprs {
				if cn, ok := e.(*expr.Counter); ok {
					c.Dropped += cn.Bytes
				}
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
