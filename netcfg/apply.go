package netcfg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Firewall programs the appliance's table in one network namespace over netlink.
type Firewall struct {
	netns   int            // fd of the namespace, 0 for the current one
	lasting bool           // keep one socket (the owner's); otherwise one per call (the CLI's)
	c       *nftables.Conn // the lasting connection, dialled on first use
	gen     *netlink.Conn  // the lasting one's socket for generation checks (every 2 s)
}

// New returns a Firewall for the current network namespace, or for the one open at netnsFD (>0).
func New(netnsFD int) *Firewall { return &Firewall{netns: netnsFD} }

// Lasting returns a Firewall for the same namespace that keeps one netlink socket open: the
// owner's, used by one goroutine only (two goroutines on one connection would mix their
// messages into one batch).
func (f *Firewall) Lasting() *Firewall { return &Firewall{netns: f.netns, lasting: true} }

func (f *Firewall) conn() (*nftables.Conn, error) {
	if f.c != nil {
		return f.c, nil
	}
	// A big receive buffer: the ruleset batch is acknowledged message by message, and the
	// generated toll-fraud rules make it long enough to overflow the default one.
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error { return c.SetReadBuffer(4 << 20) })}
	if f.netns > 0 {
		opts = append(opts, nftables.WithNetNSFd(f.netns))
	}
	if f.lasting {
		opts = append(opts, nftables.AsLasting())
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("netcfg: open netlink: %w", err)
	}
	if f.lasting {
		f.c = c
	}
	return c, nil
}

// reset drops the lasting connection after a failure, so that the next call starts on a
// clean socket (a failed batch can leave unread answers behind).
func (f *Firewall) reset() {
	if f.c != nil {
		_ = f.c.CloseLasting()
		f.c = nil
	}
	if f.gen != nil {
		_ = f.gen.Close()
		f.gen = nil
	}
}

// Close releases the lasting connection.
func (f *Firewall) Close() { f.reset() }

func nftTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// Apply replaces the appliance's ruleset with t in one atomic transaction: either the whole
// new ruleset is in force, or (on any error) the running one stays exactly as it was. The
// blocklist sets are kept with their elements (they are written apart, in chunks, by the
// owner), and every rule's counter carries over to the same rule of the new ruleset.
func (f *Firewall) Apply(t *Table) error {
	_, err := f.apply(t)
	return err
}

// apply is Apply; created lists the block sets it had to create (empty: the owner must
// write their elements).
func (f *Firewall) apply(t *Table) (created []string, err error) {
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.reset()
		}
	}()
	old, err := current(c)
	if err != nil {
		return nil, err
	}
	tbl := nftTable()
	c.AddTable(tbl) // a no-op when it is there
	for _, ch := range old.chains {
		c.DelChain(ch) // its rules go with it, and with them the references to the sets
	}
	for name, s := range old.sets {
		if !isBlockSet(name) && !isDroppedSet(name) { // kept: their elements are the history
			c.DelSet(s)
		}
	}
	sets := map[string]*nftables.Set{}
	for _, s := range t.Sets {
		if (isBlockSet(s.Name) || isDroppedSet(s.Name)) && old.sets[s.Name] != nil {
			sets[s.Name] = old.sets[s.Name]
			continue
		}
		ns := &nftables.Set{
			Table: tbl, Name: s.Name, KeyType: keyType(s.Type), Interval: s.Interval,
			HasTimeout: s.Timeout, Comment: s.Comment, Counter: s.Counter,
			Dynamic: s.Dynamic, Timeout: s.Expire, Size: s.Size,
		}
		if s.Type == TypeIfname {
			ns.KeyByteOrder = binaryutil.NativeEndian // nft declares ifname keys in host order
		}
		elems, err := textElements(s)
		if err != nil {
			return nil, fmt.Errorf("netcfg: set %s: %w", s.Name, err)
		}
		if err := c.AddSet(ns, elems); err != nil {
			return nil, fmt.Errorf("netcfg: set %s: %w", s.Name, err)
		}
		if isBlockSet(s.Name) {
			created = append(created, s.Name)
		}
		sets[s.Name] = ns
	}
	for _, ch := range t.Chains {
		nc := c.AddChain(&nftables.Chain{
			Name: ch.Name, Table: tbl, Type: nftables.ChainType(ch.Type),
			Hooknum: hooks[ch.Hook], Priority: nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority)),
			Policy: policy(ch.Policy),
		})
		seen := map[string]int{}
		for _, r := range ch.Rules {
			var e []expr.Any
			for _, m := range r.Match {
				e = append(e, m.exprs(sets)...)
			}
			k := counterKey(ch.Name, r.Comment, seen)
			cnt := &expr.Counter{}
			if was := old.counters[k]; was != nil {
				cnt.Packets, cnt.Bytes = was.Packets, was.Bytes
			}
			e = append(e, cnt)
			e = append(e, r.Verdict.exprs()...)
			nr := &nftables.Rule{Table: tbl, Chain: nc, Exprs: e}
			if r.Comment != "" {
				nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
			}
			c.AddRule(nr)
		}
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("netcfg: apply ruleset: %w", err)
	}
	return created, nil
}

func isBlockSet(name string) bool {
	for _, b := range BlockSets {
		if b == name {
			return true
		}
	}
	return false
}

// counterKey names a rule for carrying its counter over: its chain, its comment and how many
// rules of that chain had the same comment before it.
func counterKey(chain, comment string, seen map[string]int) string {
	n := seen[comment]
	seen[comment]++
	return fmt.Sprintf("%s\x00%s\x00%d", chain, comment, n)
}

// installed is what the kernel has of the appliance's table.
type installed struct {
	exists   bool
	chains   []*nftables.Chain
	rules    map[string]int // rules per chain
	sets     map[string]*nftables.Set
	counters map[string]*expr.Counter // by counterKey
}

// current reads the appliance's table as the kernel has it (exists is false when it is not there).
func current(c *nftables.Conn) (*installed, error) {
	in := &installed{sets: map[string]*nftables.Set{}, counters: map[string]*expr.Counter{}, rules: map[string]int{}}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("netcfg: list chains: %w", err)
	}
	tbl := nftTable()
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		in.exists = true
		in.chains = append(in.chains, ch)
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			return nil, fmt.Errorf("netcfg: list rules of %s: %w", ch.Name, err)
		}
		in.rules[ch.Name] = len(rules)
		seen := map[string]int{}
		for _, r := range rules {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			k := counterKey(ch.Name, comment, seen)
			for _, e := range r.Exprs {
				if cnt, ok := e.(*expr.Counter); ok {
					in.counters[k] = cnt
				}
			}
		}
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("netcfg: list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }) {
		return in, nil
	}
	in.exists = true
	sets, err := c.GetSets(tbl)
	if err != nil {
		return nil, fmt.Errorf("netcfg: list sets: %w", err)
	}
	for _, s := range sets {
		in.exists = true
		if s.Anonymous || strings.HasPrefix(s.Name, "__") {
			continue // bound to a rule, gone with it
		}
		in.sets[s.Name] = s
	}
	return in, nil
}

// Verify compares the kernel's table with t: every chain with its number of rules, every
// set, and the elements of the sets that come from the config. It says what differs, in
// words for an event; the blocklist sets' elements are the owner's to compare.
func (f *Firewall) Verify(t *Table) ([]string, error) {
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	in, err := current(c)
	if err != nil {
		f.reset()
		return nil, err
	}
	if !in.exists {
		return []string{"table inet " + TableName + " is missing"}, nil
	}
	var out []string
	for _, ch := range t.Chains {
		n, ok := in.rules[ch.Name]
		switch {
		case !ok:
			out = append(out, "chain "+ch.Name+" is missing")
		case n != len(ch.Rules):
			out = append(out, fmt.Sprintf("chain %s has %d rules, want %d", ch.Name, n, len(ch.Rules)))
		}
	}
	for _, s := range t.Sets {
		ks := in.sets[s.Name]
		if ks == nil {
			out = append(out, "set "+s.Name+" is missing")
			continue
		}
		if s.Dynamic || isBlockSet(s.Name) {
			continue
		}
		want, err := textElements(s)
		if err != nil {
			return nil, err
		}
		have, err := c.GetSetElements(ks)
		if err != nil {
			f.reset()
			return nil, fmt.Errorf("netcfg: read set %s: %w", s.Name, err)
		}
		if len(have) != len(want) {
			out = append(out, fmt.Sprintf("set %s has %d elements, want %d", s.Name, len(have), len(want)))
		}
	}
	return out, nil
}

// Generation is the kernel's nftables ruleset generation: every committed change, by anyone,
// moves it on by one. (google/nftables v0.3.0 has no call for it: one GETGEN message.)
func (f *Firewall) Generation() (uint32, error) {
	c := f.gen
	if c == nil {
		var err error
		if c, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: f.netns}); err != nil {
			return 0, fmt.Errorf("netcfg: open netlink: %w", err)
		}
		if f.lasting {
			f.gen = c
		} else {
			defer c.Close()
		}
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		f.reset()
		return 0, fmt.Errorf("netcfg: read ruleset generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			continue
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("netcfg: read ruleset generation: no answer")
}

var hooks = map[string]*nftables.ChainHook{
	"prerouting": nftables.ChainHookPrerouting, "input": nftables.ChainHookInput,
	"forward": nftables.ChainHookForward, "output": nftables.ChainHookOutput,
	"postrouting": nftables.ChainHookPostrouting,
}

func policy(p string) *nftables.ChainPolicy {
	v := nftables.ChainPolicyAccept
	if p == "drop" {
		v = nftables.ChainPolicyDrop
	}
	return &v
}

func keyType(t SetType) nftables.SetDatatype {
	switch t {
	case TypeIPv4:
		return nftables.TypeIPAddr
	case TypeIPv6:
		return nftables.TypeIP6Addr
	case TypePort:
		return nftables.TypeInetService
	}
	return nftables.TypeIFName
}

// textElements turns a set's text elements into netlink elements.
func textElements(s *Set) ([]nftables.SetElement, error) {
	var out []nftables.SetElement
	for _, e := range s.Elems {
		if s.Type == TypeIfname {
			out = append(out, nftables.SetElement{Key: ifnameBytes(e)})
			continue
		}
		p, err := parsePrefix(e)
		if err != nil {
			return nil, err
		}
		out = append(out, prefixElements(p, s.Interval, 0)...)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.ParsePrefix(s)
}

// prefixElements encodes a prefix for a set: one key, or for an interval set the start and
// the first address past the end (omitted when the network reaches the top of the space).
func prefixElements(p netip.Prefix, interval bool, timeout time.Duration) []nftables.SetElement {
	p = p.Masked()
	start := nftables.SetElement{Key: p.Addr().AsSlice(), Timeout: timeout}
	if !interval {
		return []nftables.SetElement{start}
	}
	out := []nftables.SetElement{start}
	if end, ok := afterPrefix(p); ok {
		out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
	}
	return out
}

// afterPrefix is the first address after p, or false if p ends the address space.
func afterPrefix(p netip.Prefix) (netip.Addr, bool) {
	b := p.Addr().AsSlice()
	n := new(big.Int).SetBytes(b)
	n.Add(n, new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits())))
	if n.BitLen() > p.Addr().BitLen() {
		return netip.Addr{}, false
	}
	out := make([]byte, len(b))
	n.FillBytes(out)
	a, _ := netip.AddrFromSlice(out)
	return a, true
}
