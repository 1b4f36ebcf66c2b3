package netcfg

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
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
	netns int // fd of the namespace, 0 for the current one
}

// New returns a Firewall for the current network namespace, or for the one open at netnsFD (>0).
func New(netnsFD int) *Firewall { return &Firewall{netns: netnsFD} }

func (f *Firewall) conn() (*nftables.Conn, error) {
	// A big receive buffer: the ruleset batch is acknowledged message by message, and the
	// generated toll-fraud rules make it long enough to overflow the default one.
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error { return c.SetReadBuffer(4 << 20) })}
	if f.netns > 0 {
		opts = append(opts, nftables.WithNetNSFd(f.netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("netcfg: open netlink: %w", err)
	}
	return c, nil
}

func nftTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// Apply replaces the appliance's table with t in one atomic transaction: either the whole
// new ruleset is in force, or (on any error) the running one stays exactly as it was.
// Blocklist entries already in the kernel are carried over with the time they have left.
func (f *Firewall) Apply(t *Table) error {
	keep, err := f.blockElements()
	if err != nil {
		return err
	}
	c, err := f.conn()
	if err != nil {
		return err
	}
	tbl := nftTable()
	// "add; delete; add" in one batch replaces the table whether or not it existed.
	c.AddTable(tbl)
	c.DelTable(tbl)
	c.AddTable(tbl)
	sets := map[string]*nftables.Set{}
	for _, s := range t.Sets {
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
			return fmt.Errorf("netcfg: set %s: %w", s.Name, err)
		}
		elems = append(elems, keep[s.Name]...)
		if err := c.AddSet(ns, elems); err != nil {
			return fmt.Errorf("netcfg: set %s: %w", s.Name, err)
		}
		sets[s.Name] = ns
	}
	for _, ch := range t.Chains {
		nc := c.AddChain(&nftables.Chain{
			Name: ch.Name, Table: tbl, Type: nftables.ChainType(ch.Type),
			Hooknum: hooks[ch.Hook], Priority: nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority)),
			Policy: policy(ch.Policy),
		})
		for _, r := range ch.Rules {
			var e []expr.Any
			for _, m := range r.Match {
				e = append(e, m.exprs(sets)...)
			}
			e = append(e, &expr.Counter{})
			e = append(e, r.Verdict.exprs()...)
			nr := &nftables.Rule{Table: tbl, Chain: nc, Exprs: e}
			if r.Comment != "" {
				nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
			}
			c.AddRule(nr)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netcfg: apply ruleset: %w", err)
	}
	return nil
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

// blockElements reads the blocklist sets' current elements with the time they have left.
func (f *Firewall) blockElements() (map[string][]nftables.SetElement, error) {
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	out := map[string][]nftables.SetElement{}
	for _, name := range BlockSets {
		s, err := c.GetSetByName(nftTable(), name)
		if errors.Is(err, unix.ENOENT) {
			continue // first start, or an older ruleset without this set
		}
		if err != nil {
			return nil, fmt.Errorf("netcfg: read set %s: %w", name, err)
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("netcfg: read set %s: %w", name, err)
		}
		for _, e := range els {
			// A permanent entry has no timeout and stays permanent. One with a timeout that
			// is about to run out is listed with 0 ms left: carried over as 0 it would become
			// permanent, so it gets the smallest timeout instead.
			if e.Timeout != 0 && e.Expires < time.Millisecond {
				e.Expires = time.Millisecond
			}
			e.Timeout, e.Expires = e.Expires, 0
			out[name] = append(out[name], e)
		}
	}
	return out, nil
}
