package dhcpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// Options phones read their provisioning from (the library names only 43 and 66).
const (
	optTFTPServers dhcpv4.GenericOptionCode = 150 // Cisco and others: TFTP server addresses
	optPolycomURL  dhcpv4.GenericOptionCode = 160 // Polycom, Yealink: provisioning URL
)

// handle answers one request, on one of the read loop's workers.
func (s *Server) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	if m.OpCode != dhcpv4.OpcodeBootRequest || len(m.ClientHWAddr) != 6 || addr4(m.GatewayIPAddr).IsValid() {
		return // relayed requests come from other subnets: not served
	}
	s.mu.Lock()
	reply := s.replyLocked(m)
	s.mu.Unlock()
	if reply == nil {
		return
	}
	if _, err := conn.WriteTo(reply.ToBytes(), peer); err != nil {
		s.flood.logf(warnLevel, "dhcp reply not sent", "to", peer, "mac", m.ClientHWAddr, "err", err)
	}
}

// replyLocked decides the answer to m, or nil for none; s.mu is held.
func (s *Server) replyLocked(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if !s.serving || bytes.Equal(m.ClientHWAddr, s.ownMAC) {
		return nil // refused, or the box's own check
	}
	st, now := &s.st, s.o.Now()
	mac := m.ClientHWAddr.String()
	requested := addr4(m.RequestedIPAddress())
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		ip, ok := s.t.choose(st, mac, requested, now)
		if !ok {
			s.poolFullLocked(mac, now)
			return nil
		}
		newcomer := !s.t.known(st, mac, now)
		if newcomer && !s.newDeviceLocked(m.ClientHWAddr, now) {
			return nil
		}
		s.t.offers[mac] = offer{ip: ip, until: now.Add(offerHold)}
		if newcomer {
			s.publishLocked() // its REQUEST is a known device's
		}
		return s.answer(m, dhcpv4.MessageTypeOffer, ip)
	case dhcpv4.MessageTypeRequest:
		if id := addr4(m.ServerIdentifier()); id.IsValid() && id != st.server {
			delete(s.t.offers, mac) // the client took another server's offer
			return nil
		}
		ip := requested
		if !ip.IsValid() {
			ip = addr4(m.ClientIPAddr) // renewing or rebinding
		}
		if !ip.IsValid() {
			return nil
		}
		if !s.t.usable(st, mac, ip, now) {
			s.flood.logf(slog.LevelInfo, "dhcp request refused", "mac", mac, "ip", ip)
			return s.nak(m)
		}
		if !s.t.known(st, mac, now) && !s.newDeviceLocked(m.ClientHWAddr, now) {
			return nil // no answer: the device asks again, or starts over with a DISCOVER
		}
		host := st.static[mac].hostname // a static lease's name is the config's
		if host == "" {
			host = s.claimLocked(mac, cleanHostname(m.HostName()), now)
		}
		prev := s.t.byMAC[mac]
		fresh := prev == nil || prev.IP != ip || !prev.Expiry.After(now)
		renamed := host != "" && (prev == nil || prev.Hostname != host)
		s.t.bind(mac, ip, host, now.Add(st.leaseTime))
		s.changedLocked(fresh || renamed)
		if fresh {
			s.publish(events.Event{Kind: "dhcp.lease", Source: "dhcp", Message: fmt.Sprintf("%s (%s) got %s", mac, orUnnamed(host), ip),
				Fields: map[string]string{"mac": mac, "ip": ip.String(), "hostname": host}})
		}
		return s.answer(m, dhcpv4.MessageTypeAck, ip)
	case dhcpv4.MessageTypeRelease:
		if l := s.t.byMAC[mac]; l != nil && l.IP == addr4(m.ClientIPAddr) {
			l.Expiry = now // kept, so the device gets the same address next time
			s.changedLocked(true)
		}
	case dhcpv4.MessageTypeDecline:
		if !requested.IsValid() {
			return nil
		}
		if !s.t.mayDecline(mac, requested, now) {
			s.flood.drop(dropDecline, [6]byte(m.ClientHWAddr))
			return nil
		}
		s.flood.logf(warnLevel, "dhcp address declined: something on the LAN already uses it", "mac", mac, "ip", requested)
		s.t.decline(st, requested, now)
		delete(s.t.offers, mac)
		if l := s.t.byMAC[mac]; l != nil && l.IP == requested {
			delete(s.t.byMAC, mac)
		}
		s.changedLocked(true)
	case dhcpv4.MessageTypeInform:
		r := s.answer(m, dhcpv4.MessageTypeAck, netip.Addr{})
		if r == nil {
			return nil
		}
		r.DeleteOption(dhcpv4.OptionIPAddressLeaseTime)
		r.DeleteOption(dhcpv4.OptionRenewTimeValue)
		r.DeleteOption(dhcpv4.OptionRebindingTimeValue)
		return r
	}
	return nil
}

func orUnnamed(h string) string {
	if h == "" {
		return "no name"
	}
	return h
}

// newDeviceLocked says whether a device never seen before may have an address now
// (settings.newPerHour); when not, it says so in an alert, at most once a minute.
func (s *Server) newDeviceLocked(mac net.HardwareAddr, now time.Time) bool {
	if s.newLim.AllowN(now, 1) {
		return true
	}
	s.flood.drop(dropNew, [6]byte(mac))
	if now.Sub(s.newAlert) >= time.Minute {
		s.newAlert = now
		s.alert(KeyNewDevices, fmt.Sprintf("more new devices asked for an address than the %d an hour the DHCP server gives (the last: %s), so some got none. "+
			"If many new devices are expected, raise [dhcp] new_devices_per_hour; if not, a device on the LAN is making up MAC addresses", s.st.newPerHour, mac))
	}
	return false
}

// poolFullLocked says, at most once a minute, that a device got no address.
func (s *Server) poolFullLocked(mac string, now time.Time) {
	if now.Sub(s.full) < time.Minute {
		return
	}
	s.full = now
	msg := fmt.Sprintf("no free address in the pool %s for %s: widen [dhcp] pool or shorten lease_time", s.st.pool, mac)
	s.o.Log.Warn(msg)
	s.publish(events.Event{Kind: "dhcp.pool_full", Severity: events.Warn, Source: "dhcp", Message: msg})
}

// answer is an OFFER or ACK giving ip (none for an INFORM) with the LAN's options and the
// provisioning options of the client's kind of phone.
func (s *Server) answer(m *dhcpv4.DHCPv4, t dhcpv4.MessageType, ip netip.Addr) *dhcpv4.DHCPv4 {
	st := &s.st
	box := st.server.AsSlice()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(t),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(box)),
		dhcpv4.WithNetmask(net.CIDRMask(st.subnet.Bits(), 32)),
		dhcpv4.WithOption(dhcpv4.OptRouter(box)),
		dhcpv4.WithOption(dhcpv4.OptDNS(box)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(config.Broadcast(st.subnet).AsSlice())),
		dhcpv4.WithLeaseTime(uint32(st.leaseTime / time.Second)),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(st.leaseTime / 2)),
		dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(st.leaseTime * 7 / 8)),
	}
	if ip.IsValid() {
		mods = append(mods, dhcpv4.WithYourIP(ip.AsSlice()))
	}
	if st.domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(st.domain)))
	}
	if sl, ok := st.static[m.ClientHWAddr.String()]; ok && sl.hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(sl.hostname)))
	}
	ntp := st.ntp
	if p := st.provisionFor(m.ClientHWAddr, m.ClassIdentifier()); p != nil {
		if len(p.NTPServers) > 0 {
			ntp = addrs(p.NTPServers)
		}
		mods = append(mods, provisionOptions(p)...)
	}
	mods = append(mods, dhcpv4.WithOption(dhcpv4.OptNTPServers(ips(ntp)...)))
	r, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil { // only a failing random transaction ID, which a reply copies instead
		s.o.Log.Error("dhcp reply", "err", err)
		return nil
	}
	return r
}

// nak refuses a REQUEST for an address the client may not have (it then starts over).
func (s *Server) nak(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	r, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.st.server.AsSlice())))
	if err != nil {
		return nil
	}
	return r
}

// provisionFor is the first provisioning entry for a phone with this MAC or vendor class.
func (st *settings) provisionFor(mac net.HardwareAddr, vendorClass string) *config.Provision {
	vc := strings.ToLower(vendorClass)
	for i := range st.provision {
		p := &st.provision[i]
		if p.VendorClass != "" && vc != "" && strings.HasPrefix(vc, strings.ToLower(p.VendorClass)) {
			return p
		}
		for _, pre := range p.MACPrefixes {
			if pre.Matches(mac) {
				return p
			}
		}
	}
	return nil
}

func provisionOptions(p *config.Provision) []dhcpv4.Modifier {
	var mods []dhcpv4.Modifier
	if p.URL != "" {
		for _, o := range p.URLOptions {
			switch o {
			case 66:
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptTFTPServerName(p.URL)))
			case 160:
				mods = append(mods, dhcpv4.WithGeneric(optPolycomURL, []byte(p.URL)))
			}
		}
	}
	if len(p.TFTPServers) > 0 {
		var b []byte
		for _, a := range p.TFTPServers {
			b = append(b, a.AsSlice()...)
		}
		mods = append(mods, dhcpv4.WithGeneric(optTFTPServers, b))
	}
	if v := p.VendorBytes(); len(v) > 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, v))
	}
	return mods
}

// Probe sends a DISCOVER from the box's own MAC on iface and returns the first offer
// another server makes, or nil when none answers (2 tries of 2 s). This server ignores its
// own MAC; the setup state asks it too before it serves the LAN.
func Probe(ctx context.Context, iface string) (*dhcpv4.DHCPv4, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(probeTimeout), nclient4.WithRetry(probeTries))
	if err != nil {
		return nil, fmt.Errorf("send a DISCOVER on %s: %w", iface, err)
	}
	defer c.Close()
	offer, err := c.DiscoverOffer(ctx)
	if errors.Is(err, nclient4.ErrNoResponse) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("send a DISCOVER on %s: %w", iface, err)
	}
	return offer, nil
}

// A check waits 2s, then 4s for an answer (DHCP servers answer within milliseconds; some
// wait a second to let others answer first).
var (
	probeTimeout = 2 * time.Second
	probeTries   = 2
)

func addr4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func addrs(as []config.Addr) []netip.Addr {
	out := make([]netip.Addr, len(as))
	for i, a := range as {
		out[i] = a.Addr
	}
	return out
}

func ips(as []netip.Addr) []net.IP {
	out := make([]net.IP, len(as))
	for i, a := range as {
		out[i] = a.AsSlice()
	}
	return out
}
