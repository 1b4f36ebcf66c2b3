package dhcpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/store"
)

// Lease is one device's address, as the page lists it.
type Lease struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Hostname string     `json:"hostname,omitempty"`
	// Expiry is when the lease ends; zero for a static lease the device has not asked for yet.
	Expiry time.Time `json:"expiry,omitzero"`
	Static bool      `json:"static"`
}

// leaseFile is the leases as saved: every binding the server made, expired ones too, so a
// device coming back after a weekend gets its old address.
type leaseFile struct {
	Version int      `json:"version"`
	Leases  []*Lease `json:"leases"`
}

// settings are what the server needs from the configuration, in its own terms.
type settings struct {
	iface      string
	server     netip.Addr // the box's LAN address: server identifier, router, DNS
	subnet     netip.Prefix
	pool       config.AddrRange
	leaseTime  time.Duration
	domain     string
	ntp        []netip.Addr
	static     map[string]staticLease // by MAC, lower case with colons
	staticIP   map[netip.Addr]string  // address to MAC
	provision  []config.Provision
	checkEvery time.Duration
	// reserved are the names no client may take with its host name (see names.go).
	reserved map[string]bool
	// newPerHour bounds the devices never seen before that get an address (see handle.go).
	newPerHour int
	// declineMax bounds the addresses held back after a DECLINE.
	declineMax int
}

type staticLease struct {
	ip       netip.Addr
	hostname string
}

func settingsFrom(cfg *config.Config) settings {
	d := cfg.DHCP
	lan := cfg.BoxLAN4()
	st := settings{
		iface: cfg.LAN.Interface, server: lan.Addr(), subnet: lan.Masked(), pool: d.Pool,
		leaseTime: d.LeaseTime, domain: d.Domain, provision: d.Provision, checkEvery: d.CheckInterval,
		static: map[string]staticLease{}, staticIP: map[netip.Addr]string{},
		reserved: reservedNames(cfg), newPerHour: d.NewDevicesRate(),
		declineMax: int(max(4, min(d.Pool.Size()/8, 1024))),
	}
	for _, a := range d.NTPServers {
		st.ntp = append(st.ntp, a.Addr)
	}
	if len(st.ntp) == 0 {
		st.ntp = []netip.Addr{lan.Addr()}
	}
	for _, n := range config.SortedNames(d.Static) {
		s := d.Static[n]
		mac := s.MAC.String()
		st.static[mac] = staticLease{ip: s.Address.Addr, hostname: strings.ToLower(s.Hostname)}
		st.staticIP[s.Address.Addr] = mac
	}
	return st
}

// table is the server's bindings: at most one per MAC and one per address.
type table struct {
	byMAC    map[string]*Lease
	offers   map[string]offer         // addresses offered and not yet requested, by MAC
	declined map[netip.Addr]time.Time // addresses a client found in use, until then
}

type offer struct {
	ip    netip.Addr
	until time.Time
}

// offerHold is how long an offered address is kept for the client it was offered to.
const offerHold = time.Minute

// declineHold is how long an address a client reported in use is not handed out (as
// dnsmasq does: long enough for a misconfigured device to be found, short enough that a
// false report costs little).
const declineHold = 10 * time.Minute

func newTable() *table {
	return &table{byMAC: map[string]*Lease{}, offers: map[string]offer{}, declined: map[netip.Addr]time.Time{}}
}

// holders maps each address in use now (a live lease or offer) to its MAC.
func (t *table) holders(now time.Time) map[netip.Addr]string {
	held := make(map[netip.Addr]string, len(t.byMAC)+len(t.offers))
	for mac, l := range t.byMAC {
		if l.Expiry.After(now) {
			held[l.IP] = mac
		}
	}
	for mac, o := range t.offers {
		if _, ok := held[o.ip]; !ok && o.until.After(now) {
			held[o.ip] = mac
		}
	}
	return held
}

// usable reports whether mac may have ip.
func (t *table) usable(st *settings, mac string, ip netip.Addr, now time.Time) bool {
	return t.usableWith(st, t.holders(now), mac, ip, now)
}

// usableWith is usable with the addresses in use already known.
func (t *table) usableWith(st *settings, held map[netip.Addr]string, mac string, ip netip.Addr, now time.Time) bool {
	if s, ok := st.static[mac]; ok {
		return s.ip == ip
	}
	if _, ok := st.staticIP[ip]; ok || !st.pool.Contains(ip) || !st.subnet.Contains(ip) {
		return false
	}
	if until, ok := t.declined[ip]; ok && until.After(now) {
		return false
	}
	h, ok := held[ip]
	return !ok || h == mac
}

// choose picks the address to offer mac: its static one, its last one, the one it asks
// for, a never-used one, and only then the one whose lease ended longest ago.
func (t *table) choose(st *settings, mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if s, ok := st.static[mac]; ok {
		return s.ip, true
	}
	held := t.holders(now)
	usable := func(ip netip.Addr) bool { return t.usableWith(st, held, mac, ip, now) }
	if l, ok := t.byMAC[mac]; ok && usable(l.IP) {
		return l.IP, true
	}
	if o, ok := t.offers[mac]; ok && usable(o.ip) {
		return o.ip, true
	}
	if requested.IsValid() && usable(requested) {
		return requested, true
	}
	used := map[netip.Addr]bool{}
	for _, l := range t.byMAC {
		used[l.IP] = true
	}
	// The pool is at most the LAN subnet: a walk over it is cheap (BenchmarkDiscoverBusyPool).
	for ip := st.pool.First; ip.IsValid() && !st.pool.Last.Less(ip); ip = ip.Next() {
		if !used[ip] && usable(ip) {
			return ip, true
		}
	}
	var old []*Lease
	for _, l := range t.byMAC {
		if usable(l.IP) {
			old = append(old, l)
		}
	}
	if len(old) == 0 {
		return netip.Addr{}, false
	}
	// A provisioned phone's old address goes last: a phone back after a holiday finds it.
	sort.Slice(old, func(i, j int) bool {
		if pi, pj := st.isPhone(old[i].MAC), st.isPhone(old[j].MAC); pi != pj {
			return pj
		}
		return old[i].Expiry.Before(old[j].Expiry)
	})
	return old[0].IP, true
}

// isPhone says whether mac (lower case with colons) is a phone of a provisioning entry by its OUI.
func (st *settings) isPhone(mac string) bool {
	for _, p := range st.provision {
		for _, pre := range p.MACPrefixes {
			if strings.HasPrefix(mac, string(pre)) {
				return true
			}
		}
	}
	return false
}

// known says whether mac has a static lease, a binding (even an ended one) or a live offer:
// a device the server has seen, not a newcomer.
func (t *table) known(st *settings, mac string, now time.Time) bool {
	if _, ok := st.static[mac]; ok {
		return true
	}
	if _, ok := t.byMAC[mac]; ok {
		return true
	}
	o, ok := t.offers[mac]
	return ok && o.until.After(now)
}

// mayDecline says whether mac may report ip in use: only the address it was offered or
// holds a lease on (anything else would let one device take addresses from the pool).
func (t *table) mayDecline(mac string, ip netip.Addr, now time.Time) bool {
	if o, ok := t.offers[mac]; ok && o.ip == ip && o.until.After(now) {
		return true
	}
	l := t.byMAC[mac]
	return l != nil && l.IP == ip && l.Expiry.After(now)
}

// decline holds ip back for declineHold. The table holds at most st.declineMax addresses:
// past that, the one held longest is given back first.
func (t *table) decline(st *settings, ip netip.Addr, now time.Time) {
	for a, until := range t.declined {
		if !until.After(now) {
			delete(t.declined, a)
		}
	}
	for len(t.declined) >= st.declineMax {
		var first netip.Addr
		for a, until := range t.declined {
			if !first.IsValid() || until.Before(t.declined[first]) {
				first = a
			}
		}
		delete(t.declined, first)
	}
	t.declined[ip] = now.Add(declineHold)
}

// bind gives mac the address ip until expiry, taking it from any earlier holder.
func (t *table) bind(mac string, ip netip.Addr, hostname string, expiry time.Time) {
	for m, l := range t.byMAC {
		if l.IP == ip && m != mac {
			delete(t.byMAC, m)
		}
	}
	l := t.byMAC[mac]
	if l == nil || l.IP != ip {
		l = &Lease{MAC: mac, IP: ip}
		t.byMAC[mac] = l
	}
	if hostname != "" {
		l.Hostname = hostname
	}
	l.Expiry = expiry
	delete(t.offers, mac)
}

// prune forgets what the configuration no longer allows: bindings outside the pool (but
// static ones), stale offers and declines.
func (t *table) prune(st *settings, now time.Time) {
	for mac, l := range t.byMAC {
		if s, ok := st.static[mac]; ok && s.ip == l.IP {
			continue
		}
		if !st.pool.Contains(l.IP) || !st.subnet.Contains(l.IP) {
			delete(t.byMAC, mac)
		} else if other, ok := st.staticIP[l.IP]; ok && other != mac {
			delete(t.byMAC, mac)
		}
	}
	for mac, o := range t.offers {
		if !o.until.After(now) {
			delete(t.offers, mac)
		}
	}
	for ip, until := range t.declined {
		if !until.After(now) {
			delete(t.declined, ip)
		}
	}
}

// list is the leases to show: every static lease, and the dynamic ones not expired.
func (t *table) list(st *settings, now time.Time) []Lease {
	var out []Lease
	for mac, s := range st.static {
		l := Lease{MAC: mac, IP: s.ip, Hostname: s.hostname, Static: true}
		if b, ok := t.byMAC[mac]; ok && b.IP == s.ip {
			l.Expiry = b.Expiry
			if l.Hostname == "" {
				l.Hostname = b.Hostname
			}
		}
		out = append(out, l)
	}
	for mac, l := range t.byMAC {
		if _, ok := st.static[mac]; !ok && l.Expiry.After(now) {
			out = append(out, *l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

// load reads the saved leases. A file that cannot be read as leases is kept aside (never
// overwritten: it may be repaired by hand) and the server starts without it.
func load(path string) (*table, error) {
	t := newTable()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("dhcpd: read leases: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(data, &f); err != nil {
		aside := path + ".bad"
		if rerr := os.Rename(path, aside); rerr != nil {
			return t, fmt.Errorf("dhcpd: leases in %s are unreadable (%v) and could not be moved aside: %w", path, err, rerr)
		}
		return t, fmt.Errorf("dhcpd: leases in %s were unreadable (%v): moved to %s, starting without them", path, err, aside)
	}
	for _, l := range f.Leases {
		hw, err := net.ParseMAC(l.MAC)
		if err != nil || !l.IP.Is4() {
			continue
		}
		l.MAC, l.Static = hw.String(), false
		t.bind(l.MAC, l.IP, l.Hostname, l.Expiry)
	}
	return t, nil
}

// copyLeases is every binding, copied (to be written without the server's lock).
func (t *table) copyLeases() []*Lease {
	out := make([]*Lease, 0, len(t.byMAC))
	for _, l := range t.byMAC {
		c := *l
		out = append(out, &c)
	}
	return out
}

// saveLeases writes the bindings crash-safe (a power cut leaves the old file or the new one).
func saveLeases(path string, leases []*Lease) error {
	f := leaseFile{Version: 1, Leases: leases}
	sort.Slice(f.Leases, func(i, j int) bool { return f.Leases[i].IP.Less(f.Leases[j].IP) })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("dhcpd: save leases: %w", err)
	}
	return store.WriteFile(path, append(data, '\n'), 0o600)
}

// cleanHostname is a client's option 12 as a LAN host name (one DNS label), or "".
func cleanHostname(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if i := strings.IndexByte(h, '.'); i >= 0 {
		h = h[:i]
	}
	if h == "" || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return ""
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return ""
		}
	}
	return h
}
