package dhcpd

import (
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// denied are names no device may take with its DHCP host name: each would let it answer for
// something the office's machines look up by itself (wpad and isatap: the proxy and IPv6
// tunnel auto-discovery of Windows; the others are taken for the box by people and tools).
var denied = []string{"wpad", "isatap", "localhost", "localdomain", "broadcasthost", "router", "gateway", "dns", "ntp"}

// reservedNames are the names a client's host name may not take: the denied ones, the
// labels of the local domains, the box's and the PBX's names, and the static leases' names
// (those are exported as the static leases say, never as a client asks).
func reservedNames(cfg *config.Config) map[string]bool {
	r := map[string]bool{}
	for _, n := range denied {
		r[n] = true
	}
	for _, d := range []string{cfg.DNS.Domain, cfg.DHCP.Domain} {
		for _, l := range strings.Split(strings.ToLower(d), ".") {
			if l != "" {
				r[l] = true
			}
		}
	}
	for _, n := range []string{cfg.DNS.BoxName, cfg.DNS.PBXName} {
		if n != "" {
			r[strings.ToLower(n)] = true
		}
	}
	for _, s := range cfg.DHCP.Static {
		if s.Hostname != "" {
			r[strings.ToLower(s.Hostname)] = true
		}
	}
	return r
}

// claimLocked is the host name mac may record with its lease: host, or "" when the name is
// reserved or another device's live lease holds it already (first come keeps it).
func (s *Server) claimLocked(mac, host string, now time.Time) string {
	if host == "" {
		return ""
	}
	why := ""
	if s.st.reserved[host] {
		why = "the name is reserved (the box, the PBX, a static lease, the domain, or a name like wpad)"
	} else {
		for m, l := range s.t.byMAC {
			if m != mac && l.Hostname == host && l.Expiry.After(now) {
				why = "another device's lease holds it (" + m + ")"
				break
			}
		}
	}
	if why == "" {
		return host
	}
	s.flood.logf(warnLevel, "dhcp host name not taken", "mac", mac, "hostname", host, "reason", why)
	return ""
}

// view is what is read without the server's lock, swapped whole: the MACs the server knows
// (for the read loop's limits) and the host names to export to DNS (so a lookup never waits
// on DHCP).
type view struct {
	known   map[[6]byte]struct{}
	entries []hostEntry // in the order they claim names: static leases first
	names   map[string]netip.Addr
	until   time.Time // when the first dynamic lease in names ends: names is stale from then
}

type hostEntry struct {
	name   string
	ip     netip.Addr
	expiry time.Time // zero: static
}

// publishLocked builds the view from the table; s.mu is held.
func (s *Server) publishLocked() {
	now := s.o.Now()
	v := &view{known: make(map[[6]byte]struct{}, len(s.st.static)+len(s.t.byMAC))}
	addKnown := func(mac string) {
		if hw, err := net.ParseMAC(mac); err == nil && len(hw) == 6 {
			v.known[[6]byte(hw)] = struct{}{}
		}
	}
	for mac := range s.st.static {
		addKnown(mac)
	}
	for mac := range s.t.byMAC {
		addKnown(mac)
	}
	for mac, o := range s.t.offers {
		if o.until.After(now) {
			addKnown(mac)
		}
	}
	var dynamic []hostEntry
	for _, l := range s.t.list(&s.st, now) {
		switch {
		case l.Hostname == "":
		case l.Static:
			v.entries = append(v.entries, hostEntry{name: l.Hostname, ip: l.IP})
		case !s.st.reserved[l.Hostname]: // a name reserved after the lease was made
			dynamic = append(dynamic, hostEntry{name: l.Hostname, ip: l.IP, expiry: l.Expiry})
		}
	}
	// Of two live leases with one name (from before a restart), the older claim wins: the
	// one that ends first.
	sort.SliceStable(dynamic, func(i, j int) bool { return dynamic[i].expiry.Before(dynamic[j].expiry) })
	v.entries = append(v.entries, dynamic...)
	v.fill(now)
	s.view.Store(v)
}

// fill computes names from entries for the time now.
func (v *view) fill(now time.Time) {
	v.names = make(map[string]netip.Addr, len(v.entries))
	v.until = time.Time{}
	for _, e := range v.entries {
		if _, taken := v.names[e.name]; taken || !e.expiry.IsZero() && !e.expiry.After(now) {
			continue
		}
		v.names[e.name] = e.ip
		if !e.expiry.IsZero() && (v.until.IsZero() || e.expiry.Before(v.until)) {
			v.until = e.expiry
		}
	}
}

// Hostnames are the LAN's devices by host name (one label, lower case, without the
// domain), for the DNS forwarder: static leases' names and the names clients gave with a
// live lease, never a reserved name nor one another device holds. It takes no lock that
// DHCP holds. The map is shared: callers must not change it.
func (s *Server) Hostnames() map[string]netip.Addr {
	v := s.view.Load()
	if v == nil {
		return nil
	}
	now := s.o.Now()
	if v.until.IsZero() || now.Before(v.until) {
		return v.names
	}
	// A lease ended since the view was made: drop it from a copy.
	nv := &view{known: v.known, entries: v.entries}
	nv.fill(now)
	s.view.CompareAndSwap(v, nv)
	return nv.names
}
