package netcfg

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Who the firewall turns away: the input and forward chains end by noting, for what came in
// from the internet and no rule let through, its source address and its TCP or UDP
// destination port in dynamic sets whose elements count packets and expire an hour or a
// day after their last packet. This works on kernels without NFLOG (gokrazy's), and the
// sets are bounded by their size: when one is full, a new source is not noted (the packet
// is dropped all the same, by the rule after the notes).

// TypePort is the key type of a set of TCP or UDP ports.
const TypePort SetType = "inet_service"

// DroppedWindows are the dropped sets' windows, shortest first: each set's elements expire
// this long after their last packet.
var DroppedWindows = []struct {
	Name   string
	Expire time.Duration
}{{"hour", time.Hour}, {"day", 24 * time.Hour}}

// droppedSize bounds each dropped set: the kernel's set dump is quadratic in its size
// (BenchmarkDroppedFull), and the page wants the top sources, not every one.
const droppedSize = 1024

// DroppedSet names a dropped set: what ("src4", "src6", "tcp", "udp") and its window ("hour", "day").
func DroppedSet(what, window string) string { return "dropped_" + what + "_" + window }

// DroppedKinds are the sets' kinds with their key types, for the reader.
var DroppedKinds = []struct {
	What string
	Type SetType
}{{"src4", TypeIPv4}, {"src6", TypeIPv6}, {"tcp", TypePort}, {"udp", TypePort}}

// isDroppedSet says whether name is a dropped set's: Apply keeps them, with what they
// noted, like the block sets (their definition never depends on the config).
func isDroppedSet(name string) bool { return strings.HasPrefix(name, "dropped_") }

// droppedWords name each kind in the rules' comments (the metrics' stable labels).
var droppedWords = map[string]string{"src4": "IPv4 sources", "src6": "IPv6 sources", "tcp": "TCP ports", "udp": "UDP ports"}

// addDroppedSets puts the dropped sets right after the block sets: Apply keeps both, so
// the kernel lists the sets in the same order after every apply.
func addDroppedSets(t *Table) {
	at := 0
	for at < len(t.Sets) && isBlockSet(t.Sets[at].Name) {
		at++
	}
	t.Sets = slices.Insert(t.Sets, at, droppedSets()...)
}

// droppedSets are the sets the drop rules note sources and ports in.
func droppedSets() []*Set {
	var out []*Set
	for _, k := range DroppedKinds {
		for _, w := range DroppedWindows {
			out = append(out, &Set{Name: DroppedSet(k.What, w.Name), Type: k.Type, Dynamic: true, Timeout: true, Counter: true,
				Expire: w.Expire, Size: droppedSize, Comment: "dropped from the internet, last " + w.Name})
		}
	}
	return out
}

// droppedRules end a filter chain: note what comes from the internet, then drop everything.
func droppedRules() []Rule {
	note := func(what string, m ...Match) Rule {
		for _, w := range DroppedWindows {
			m = append(m, noteIn{set: DroppedSet(what, w.Name), what: what})
		}
		return Rule{Match: append([]Match{IifIn("uplinks")}, m...), Verdict: Continue, Comment: "note dropped " + droppedWords[what]}
	}
	return []Rule{
		note("src4", NFProto("ipv4")),
		note("src6", NFProto("ipv6")),
		note("tcp", Proto("tcp")),
		note("udp", Proto("udp")),
		{Verdict: Drop, Comment: "everything else"},
	}
}

// noteIn adds (or refreshes) the packet's source address or destination port in a dynamic
// set; the set's own counter counts the element's packets.
type noteIn struct{ set, what string }

func (m noteIn) key() string {
	switch m.what {
	case "src4":
		return "ip saddr"
	case "src6":
		return "ip6 saddr"
	}
	return "th dport"
}

func (m noteIn) text() string { return "update @" + m.set + " { " + m.key() + " }" }

func (m noteIn) exprs(sets map[string]*nftables.Set) []expr.Any {
	off, n, base := uint32(2), uint32(2), expr.PayloadBaseTransportHeader
	switch m.what {
	case "src4":
		off, n, base = 12, 4, expr.PayloadBaseNetworkHeader
	case "src6":
		off, n, base = 8, 16, expr.PayloadBaseNetworkHeader
	}
	s := sets[m.set]
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n},
		&expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: uint32(unix.NFT_DYNSET_OP_UPDATE)},
	}
}

type continueVerdict struct{}

// Continue ends a rule that only notes or counts: the packet goes on to the next rule.
var Continue Verdict = continueVerdict{}

func (continueVerdict) text() string { return "continue" }
func (continueVerdict) exprs() []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictContinue}}
}

// DroppedCount is one source address or port and the packets dropped from or to it.
type DroppedCount struct {
	Key     string `json:"key"` // an address, or a port number
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// DroppedWindow is what was dropped from the internet in one window (an element stays as
// long as packets keep coming, so a persistent source counts from its first packet).
type DroppedWindow struct {
	Window  string         `json:"window"` // hour or day
	Sources []DroppedCount `json:"sources"`
	TCP     []DroppedCount `json:"tcp"`
	UDP     []DroppedCount `json:"udp"`
	Seen    int            `json:"sources_seen"` // distinct sources in the window
	Full    bool           `json:"full"`         // a set reached its size: new sources or ports are not noted
}

// Dropped reads the dropped sets (bounded by their size, so reading them whole is cheap,
// unlike the block sets) and returns each window's top sources and ports by packets.
func (f *Firewall) Dropped(top int) ([]DroppedWindow, error) {
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	tbl := nftTable()
	var out []DroppedWindow
	for _, w := range DroppedWindows {
		dw := DroppedWindow{Window: w.Name, Sources: []DroppedCount{}, TCP: []DroppedCount{}, UDP: []DroppedCount{}}
		for _, k := range DroppedKinds {
			set, err := c.GetSetByName(tbl, DroppedSet(k.What, w.Name))
			if err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // a ruleset from before the dropped sets
				}
				return nil, fmt.Errorf("netcfg: dropped set %s: %w", DroppedSet(k.What, w.Name), err)
			}
			elems, err := c.GetSetElements(set)
			if err != nil {
				return nil, fmt.Errorf("netcfg: read dropped set %s: %w", set.Name, err)
			}
			dw.Full = dw.Full || len(elems) >= droppedSize
			counts := make([]DroppedCount, 0, len(elems))
			for _, e := range elems {
				dc := DroppedCount{Key: droppedKey(k.Type, e.Key)}
				if e.Counter != nil {
					dc.Packets, dc.Bytes = e.Counter.Packets, e.Counter.Bytes
				}
				counts = append(counts, dc)
			}
			switch k.What {
			case "src4", "src6":
				dw.Seen += len(counts)
				dw.Sources = append(dw.Sources, counts...)
			case "tcp":
				dw.TCP = counts
			case "udp":
				dw.UDP = counts
			}
		}
		dw.Sources, dw.TCP, dw.UDP = topDropped(dw.Sources, top), topDropped(dw.TCP, top), topDropped(dw.UDP, top)
		out = append(out, dw)
	}
	return out, nil
}

func droppedKey(t SetType, key []byte) string {
	if t == TypePort && len(key) >= 2 {
		return strconv.Itoa(int(binary.BigEndian.Uint16(key)))
	}
	if a, ok := netip.AddrFromSlice(key); ok {
		return a.String()
	}
	return fmt.Sprintf("%x", key)
}

// topDropped sorts by packets, most first, and keeps n.
func topDropped(cs []DroppedCount, n int) []DroppedCount {
	slices.SortFunc(cs, func(a, b DroppedCount) int {
		return cmp.Or(cmp.Compare(b.Packets, a.Packets), cmp.Compare(a.Key, b.Key))
	})
	return cs[:min(n, len(cs))]
}
