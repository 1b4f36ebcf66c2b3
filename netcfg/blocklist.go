package netcfg

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Blocked is one entry of the kernel blocklist.
type Blocked struct {
	Prefix  netip.Prefix  // a single address is a /32 or /128
	Expires time.Duration // time left; 0 for a permanent entry
	Packets uint64        // packets dropped since the entry was added (block sets count per element)
}

// ErrNotRunning means the appliance's table is not in the kernel (the daemon never applied it).
var ErrNotRunning = errors.New("the appliance's firewall is not loaded")

// ErrProtected means the address belongs to a trusted SIP peer or an admin network.
var ErrProtected = errors.New("is a trusted SIP peer or in an admin network: never blocked")

func blockSetFor(p netip.Prefix) (name string, interval bool) {
	single := p.IsSingleIP()
	switch {
	case p.Addr().Is4() && single:
		return SetBlock4, false
	case single:
		return SetBlock6, false
	case p.Addr().Is4():
		return SetBlockNet4, true
	}
	return SetBlockNet6, true
}

func (f *Firewall) set(c *nftables.Conn, name string) (*nftables.Set, error) {
	s, err := c.GetSetByName(nftTable(), name)
	if errors.Is(err, unix.ENOENT) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, fmt.Errorf("netcfg: read set %s: %w", name, err)
	}
	return s, nil
}

// Block adds an address or network to the kernel blocklist for d (0: until unblocked),
// replacing the timeout of an existing entry. Trusted peers and admin networks are refused.
func (f *Firewall) Block(p netip.Prefix, d time.Duration) error {
	p = p.Masked()
	if p.Addr().Zone() != "" || !p.IsValid() {
		return fmt.Errorf("netcfg: block %s: not an IP address or network", p)
	}
	// The kernel counts timeouts in whole milliseconds and takes 0 as "never": a shorter
	// time would silently become a permanent block, a negative one a huge timeout.
	if d < 0 || (d > 0 && d < time.Millisecond) {
		return fmt.Errorf("netcfg: block %s: duration %s: give 0 (until unblocked) or at least 1ms", p, d)
	}
	protected, err := f.protected(p)
	if err != nil {
		return err
	}
	if protected {
		return fmt.Errorf("netcfg: block %s: %w", p, ErrProtected)
	}
	// One add, whatever the blocklist's size: the kernel (6.x, checked by TestBlocklist)
	// updates the timeout of an entry that is already there.
	if err := f.changeBlock(p, d, (*nftables.Conn).SetAddElements); err != nil {
		return fmt.Errorf("netcfg: block %s: %w", p, err)
	}
	return nil
}

// Unblock removes an address or network from the blocklist.
func (f *Firewall) Unblock(p netip.Prefix) error {
	p = p.Masked()
	err := f.changeBlock(p, 0, (*nftables.Conn).SetDeleteElements)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netcfg: unblock %s: not blocked", p)
	}
	if err != nil {
		return fmt.Errorf("netcfg: unblock %s: %w", p, err)
	}
	return nil
}

// changeBlock adds p to, or deletes it from, the blocklist set of its kind in one transaction.
func (f *Firewall) changeBlock(p netip.Prefix, d time.Duration, op func(*nftables.Conn, *nftables.Set, []nftables.SetElement) error) error {
	c, err := f.conn()
	if err != nil {
		return err
	}
	name, interval := blockSetFor(p)
	s, err := f.set(c, name)
	if err != nil {
		return err
	}
	if err := op(c, s, prefixElements(p, interval, d)); err != nil {
		return err
	}
	return c.Flush()
}

// Blocklist lists the blocked addresses and networks, sorted by address.
func (f *Firewall) Blocklist() ([]Blocked, error) {
	var out []Blocked
	for _, name := range BlockSets {
		list, err := f.setList(name)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.Addr().Less(out[j].Prefix.Addr()) })
	return out, nil
}

// setList reads one block set's entries.
func (f *Firewall) setList(name string) ([]Blocked, error) {
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	s, err := f.set(c, name)
	if err != nil {
		return nil, err
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		f.reset()
		return nil, fmt.Errorf("netcfg: read set %s: %w", name, err)
	}
	return decodeElements(els, s.Interval), nil
}

// protected reports whether p overlaps a trusted SIP peer or an admin network in the kernel.
func (f *Firewall) protected(p netip.Prefix) (bool, error) {
	c, err := f.conn()
	if err != nil {
		return false, err
	}
	for _, name := range []string{"sip_peers4", "sip_peers6", "admin4", "admin6"} {
		s, err := f.set(c, name)
		if err != nil {
			return false, err
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return false, fmt.Errorf("netcfg: read set %s: %w", name, err)
		}
		for _, b := range decodeElements(els, true) {
			if b.Prefix.Overlaps(p) {
				return true, nil
			}
		}
	}
	return false, nil
}

func mustAddr(b []byte) netip.Addr { a, _ := netip.AddrFromSlice(b); return a }

// prefixLen finds the prefix length of the CIDR block [start, end) (end invalid: to the top).
func prefixLen(start, end netip.Addr) int {
	for bits := 0; bits <= start.BitLen(); bits++ {
		p := netip.PrefixFrom(start, bits)
		if p.Masked().Addr() != start {
			continue
		}
		e, ok := afterPrefix(p)
		if (!ok && !end.IsValid()) || (ok && e == end) {
			return bits
		}
	}
	return start.BitLen()
}

func elemPackets(e nftables.SetElement) uint64 {
	if e.Counter != nil {
		return e.Counter.Packets
	}
	return 0
}
