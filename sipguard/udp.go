package sipguard

import "net/netip"

// UDP is one datagram's addresses, ports and payload; Payload is a view into the packet.
type UDP struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Payload          []byte
}

// DecodeUDP reads a raw IPv4/IPv6 packet's UDP datagram with the checks sipguard's own
// capture makes (fragments after the first, short or non-UDP packets are refused), without
// allocating: package calls follows calls from the same LAN with it.
func DecodeUDP(b []byte) (UDP, bool) {
	ip, ok := decodeIP(b, 0)
	if !ok || ip.tcp {
		return UDP{}, false
	}
	return UDP{Src: ip.src, Dst: ip.dst, SrcPort: ip.sport, DstPort: ip.dport, Payload: ip.payload}, true
}
