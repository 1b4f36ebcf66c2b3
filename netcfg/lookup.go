package netcfg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Lookup reads the kernel's entries for ps from the block sets, by key, in one request per
// set: what a dump cannot do at scale (a dump of a big set costs the square of its size),
// and what google/nftables has no call for, so the few netlink messages are written here.
// Networks are found by their exact prefix. Prefixes not in the kernel are absent from the map.
func (f *Firewall) Lookup(ps []netip.Prefix) (map[netip.Prefix]Blocked, error) {
	bySet := map[string][]netip.Prefix{}
	for _, p := range ps {
		name, _ := blockSetFor(p.Masked())
		bySet[name] = append(bySet[name], p.Masked())
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: f.netns})
	if err != nil {
		return nil, fmt.Errorf("netcfg: open netlink: %w", err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(4 << 20)
	out := map[netip.Prefix]Blocked{}
	for name, list := range bySet {
		for len(list) > 0 {
			n := min(len(list), 1000)
			if err := f.lookupChunk(c, name, list[:n], out); err != nil {
				return nil, err
			}
			list = list[n:]
		}
	}
	return out, nil
}

// lookupChunk asks for up to a thousand keys at once; the kernel stops at the first key it
// does not have (ENOENT), so such a chunk is asked again key by key.
func (f *Firewall) lookupChunk(c *netlink.Conn, set string, ps []netip.Prefix, out map[netip.Prefix]Blocked) error {
	err := f.getElems(c, set, ps, out)
	if !errors.Is(err, unix.ENOENT) || len(ps) == 1 {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	for _, p := range ps {
		if err := f.getElems(c, set, []netip.Prefix{p}, out); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

func (f *Firewall) getElems(c *netlink.Conn, set string, ps []netip.Prefix, out map[netip.Prefix]Blocked) error {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ne *netlink.AttributeEncoder) error {
		for i, p := range ps {
			ne.Nested(uint16(i+1), func(el *netlink.AttributeEncoder) error {
				el.Nested(unix.NFTA_SET_ELEM_KEY, func(k *netlink.AttributeEncoder) error {
					k.Bytes(unix.NFTA_DATA_VALUE, p.Addr().AsSlice())
					return nil
				})
				return nil
			})
		}
		return nil
	})
	data, err := ae.Encode()
	if err != nil {
		return err
	}
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...),
	}
	// Not Execute: the kernel answers a multi-element GET with one message per element, and
	// those carry sequence 0 on some kernels; the acknowledgement ends the answer.
	sent, err := c.Send(req)
	if err != nil {
		return err
	}
	var msgs []netlink.Message
	for done := false; !done; {
		rs, err := c.Receive()
		if err != nil {
			return err
		}
		for _, m := range rs {
			if m.Header.Type == netlink.Error {
				if m.Header.Sequence == sent.Header.Sequence {
					done = true
				}
				continue
			}
			msgs = append(msgs, m)
		}
	}
	asked := map[netip.Addr]netip.Prefix{}
	for _, p := range ps {
		asked[p.Addr()] = p
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		for _, b := range decodeElemReply(m.Data[4:]) {
			// The reply carries the key only: the prefix length is the one asked for.
			if p, ok := asked[b.Prefix.Addr()]; ok {
				b.Prefix = p
				out[p] = b
			}
		}
	}
	return nil
}

// decodeElemReply reads the elements of a NEWSETELEM answer: key, expiration, counter.
func decodeElemReply(data []byte) []Blocked {
	var out []Blocked
	ad, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return nil
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				var b Blocked
				list.Nested(func(el *netlink.AttributeDecoder) error {
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(k *netlink.AttributeDecoder) error {
								for k.Next() {
									if k.Type() == unix.NFTA_DATA_VALUE {
										if a, ok := netip.AddrFromSlice(k.Bytes()); ok {
											b.Prefix = netip.PrefixFrom(a, a.BitLen())
										}
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_EXPIRATION:
							b.Expires = time.Duration(el.Uint64()) * time.Millisecond
						case unix.NFTA_SET_ELEM_EXPR:
							el.Nested(func(e *netlink.AttributeDecoder) error { b.Packets = counterPackets(e); return nil })
						case nftaSetElemExpressions:
							el.Nested(func(es *netlink.AttributeDecoder) error {
								for es.Next() {
									es.Nested(func(e *netlink.AttributeDecoder) error { b.Packets += counterPackets(e); return nil })
								}
								return nil
							})
						}
					}
					return nil
				})
				out = append(out, b)
			}
			return nil
		})
	}
	return out
}

const nftaSetElemExpressions = 11 // NFTA_SET_ELEM_EXPRESSIONS, not in x/sys

// counterPackets reads a counter expression's packets (0 for any other expression).
func counterPackets(e *netlink.AttributeDecoder) uint64 {
	var name string
	var packets uint64
	for e.Next() {
		switch e.Type() {
		case unix.NFTA_EXPR_NAME:
			name = e.String()
		case unix.NFTA_EXPR_DATA:
			e.Nested(func(d *netlink.AttributeDecoder) error {
				for d.Next() {
					if d.Type() == unix.NFTA_COUNTER_PACKETS {
						packets = d.Uint64()
					}
				}
				return nil
			})
		}
	}
	if name != "counter" {
		return 0
	}
	return packets
}
