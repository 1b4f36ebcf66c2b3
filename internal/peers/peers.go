// Package peers resolves the host names of trusted SIP peers and admins, and keeps the
// firewall's peer sets following their addresses as the names' records change.
package peers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/store"
	"github.com/officeedge/appliance/netcfg"
)

// Bounds on how often a name is looked up again: its records' TTL, clamped.
const (
	MinTTL = 30 * time.Second
	MaxTTL = time.Hour
	// maxAddrs bounds the addresses one name may bring in: a name is a host or a small
	// pool, never a way to open the door to a network.
	maxAddrs = 32
)

// Owner takes the addresses; netcfg.Owner.SetResolved.
type Owner interface {
	SetResolved(key string, addrs []netip.Addr) error
}

// Options are the resolver's parts.
type Options struct {
	Config  func() *config.Config
	Servers func() []netip.AddrPort // DNS servers to ask now (the active uplink's)
	Owner   Owner
	Alerts  *alerts.Store
	Bus     *events.Bus
	Log     *slog.Logger
	// KeepFor is how long a name's last good addresses stay trusted while it fails to
	// resolve (default 24 h): long enough to ride out a DNS outage, not forever.
	KeepFor time.Duration
	// StateDir keeps the last good addresses across restarts (a box that boots while DNS is
	// down still lets its trunks in); "" keeps them in memory.
	StateDir string
	Now      func() time.Time
}

// Name is one host name's state, for the page and the CLI.
type Name struct {
	Key      string       `json:"key"`  // "sip_peers.NAME" or "admin"
	Host     string       `json:"host"` // the name in the config
	Addrs    []netip.Addr `json:"addrs"`
	Resolved time.Time    `json:"resolved,omitzero"` // last successful lookup
	Next     time.Time    `json:"next"`              // next lookup
	TTL      string       `json:"ttl,omitempty"`
	Error    string       `json:"error,omitempty"` // the last lookup's, if it failed
}

// Resolver looks the names up when their records run out and hands the addresses to the owner.
type Resolver struct {
	o Options

	mu     sync.Mutex
	names  map[string]*Name // by key + " " + host
	loaded bool             // names came from the state file: the first round hands them over
}

// New makes a resolver; it does nothing until Run.
func New(o Options) *Resolver {
	if o.KeepFor <= 0 {
		o.KeepFor = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	r := &Resolver{o: o, names: map[string]*Name{}}
	r.load()
	return r
}

func (r *Resolver) path() string { return filepath.Join(r.o.StateDir, "peers.json") }

// load takes the saved names; an unreadable file is logged and starts empty.
func (r *Resolver) load() {
	if r.o.StateDir == "" {
		return
	}
	data, err := os.ReadFile(r.path())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var saved []Name
	if err == nil {
		err = json.Unmarshal(data, &saved)
	}
	if err != nil {
		r.o.Log.Warn("peers: saved names unreadable; resolving afresh", "err", err)
		return
	}
	for _, n := range saved {
		n.Next = time.Time{} // looked up at once
		r.names[n.Key+" "+n.Host] = &n
	}
	r.loaded = len(saved) > 0
}

// save writes the names crash-safe.
func (r *Resolver) save() {
	if r.o.StateDir == "" {
		return
	}
	data, err := json.Marshal(r.Status())
	if err == nil {
		err = store.WriteFile(r.path(), data, 0o600)
	}
	if err != nil {
		r.o.Log.Error("peers: save the names", "err", err)
	}
}

// Status lists every name with its addresses, sorted.
func (r *Resolver) Status() []Name {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Name, 0, len(r.names))
	for _, n := range r.names {
		c := *n
		c.Addrs = slices.Clone(n.Addrs)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Name) int { return strings.Compare(a.Key+" "+a.Host, b.Key+" "+b.Host) })
	return out
}

// wanted is the config's names: key -> hosts, and whether the key is a trunk (SRV too).
type wanted struct {
	hosts []string
	trunk bool
}

func names(cfg *config.Config) map[string]wanted {
	out := map[string]wanted{}
	for n, p := range cfg.SIPPeers {
		if len(p.Hosts) > 0 {
			out[netcfg.PeerKey(n)] = wanted{hosts: p.Hosts, trunk: p.Kind == "trunk"}
		}
	}
	if len(cfg.Admin.Hosts) > 0 {
		out[netcfg.AdminKey] = wanted{hosts: cfg.Admin.Hosts}
	}
	return out
}

// Run resolves every name when it is due, and follows config changes (checked each second).
func (r *Resolver) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// round looks up the names that are due and gives the owner each key whose addresses changed.
func (r *Resolver) round(ctx context.Context) {
	want := names(r.o.Config())
	now := r.o.Now()
	changed := map[string]bool{}
	r.mu.Lock()
	if r.loaded {
		for _, n := range r.names {
			changed[n.Key] = true
		}
		r.loaded = false
	}
	for id, n := range r.names {
		if w, ok := want[n.Key]; !ok || !slices.Contains(w.hosts, n.Host) {
			delete(r.names, id)
			changed[n.Key] = true
		}
	}
	var due []*Name
	trunk := map[string]bool{}
	for key, w := range want {
		trunk[key] = w.trunk
		for _, h := range w.hosts {
			id := key + " " + h
			n, ok := r.names[id]
			if !ok {
				n = &Name{Key: key, Host: h}
				r.names[id] = n
			}
			if !now.Before(n.Next) {
				due = append(due, n)
			}
		}
	}
	r.mu.Unlock()
	for _, n := range due {
		addrs, ttl, err := r.lookup(ctx, n.Host, trunk[n.Key])
		if ctx.Err() != nil {
			return
		}
		if r.update(n, addrs, ttl, err, r.o.Now()) {
			changed[n.Key] = true
		}
	}
	for key := range changed {
		if err := r.o.Owner.SetResolved(key, r.addrsOf(key)); err != nil {
			r.o.Log.Error("peers: update the firewall", "key", key, "err", err)
		}
	}
	if len(changed) > 0 {
		r.save()
	}
	r.alert()
}

// update records one lookup; it reports whether the name's addresses changed. A failure
// keeps the last good addresses for KeepFor, then drops them: never more than they were.
func (r *Resolver) update(n *Name, addrs []netip.Addr, ttl time.Duration, err error, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	before := n.Addrs
	if err != nil {
		n.Error = err.Error()
		n.Next = now.Add(MinTTL)
		if !n.Resolved.IsZero() && now.Sub(n.Resolved) > r.o.KeepFor {
			n.Addrs = nil
		}
		if n.Error != "" && !slices.Equal(before, n.Addrs) {
			r.event(events.Warn, "peers.dropped", fmt.Sprintf("%s (%s): not resolved since %s; its addresses are no longer trusted", n.Host, n.Key, n.Resolved.UTC().Format(time.RFC3339)))
		}
		return !slices.Equal(before, n.Addrs)
	}
	n.Addrs, n.Resolved, n.Error = addrs, now, ""
	n.TTL = ttl.String()
	n.Next = now.Add(ttl)
	if !slices.Equal(before, addrs) {
		r.event(events.Info, "peers.changed", fmt.Sprintf("%s (%s) is now %s", n.Host, n.Key, joinAddrs(addrs)))
		return true
	}
	return false
}

func (r *Resolver) addrsOf(key string) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.Addr
	for _, n := range r.names {
		if n.Key == key {
			out = append(out, n.Addrs...)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// alert raises one alert per failing name, cleared once it resolves again.
func (r *Resolver) alert() {
	if r.o.Alerts == nil {
		return
	}
	r.mu.Lock()
	type a struct{ key, msg string }
	var raise []a
	var clear []string
	for _, n := range r.names {
		k := "peers.resolve." + n.Key + "." + n.Host
		if n.Error == "" {
			clear = append(clear, k)
			continue
		}
		kept := "no address yet: it is not trusted"
		if len(n.Addrs) > 0 {
			kept = fmt.Sprintf("its last addresses (%s, from %s) stay trusted until %s", joinAddrs(n.Addrs),
				n.Resolved.UTC().Format(time.RFC3339), n.Resolved.Add(r.o.KeepFor).UTC().Format(time.RFC3339))
		}
		raise = append(raise, a{k, fmt.Sprintf("%s (%s) does not resolve: %s; %s", n.Host, n.Key, n.Error, kept)})
	}
	r.mu.Unlock()
	for _, x := range raise {
		r.o.Alerts.Raise(x.key, "peers", x.msg)
	}
	for _, k := range clear {
		r.o.Alerts.Clear(k)
	}
}

func (r *Resolver) event(sev events.Severity, kind, msg string) {
	if r.o.Bus != nil {
		r.o.Bus.Publish(events.Event{Severity: sev, Kind: kind, Source: "peers", Message: msg})
	}
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// errNoServers means there is no DNS server to ask (no uplink up, none configured).
var errNoServers = errors.New("no DNS server to ask")

// lookup resolves host: its A and AAAA records, and for a trunk its SIP SRV records' targets.
// The TTL is the shortest of the records used, clamped to [MinTTL, MaxTTL].
func (r *Resolver) lookup(ctx context.Context, host string, trunk bool) ([]netip.Addr, time.Duration, error) {
	servers := r.o.Servers()
	if len(servers) == 0 {
		return nil, 0, errNoServers
	}
	q := &querier{servers: servers}
	fqdn := dns.Fqdn(strings.ToLower(host))
	ttl := MaxTTL
	var addrs []netip.Addr
	var errs []error
	answered := false
	addHost := func(name string) {
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
			rrs, err := q.ask(ctx, name, t)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			answered = true
			for _, rr := range rrs {
				if a, ok := addrOf(rr); ok {
					addrs = append(addrs, a)
					ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
				}
			}
		}
	}
	addHost(fqdn)
	if trunk {
		for _, srv := range []string{"_sip._udp.", "_sip._tcp.", "_sips._tcp."} {
			rrs, err := q.ask(ctx, srv+fqdn, dns.TypeSRV)
			if err != nil {
				continue // most names have no SRV records: only their absence is told apart
			}
			for _, rr := range rrs {
				if s, ok := rr.(*dns.SRV); ok && s.Target != "." {
					ttl = min(ttl, time.Duration(s.Hdr.Ttl)*time.Second)
					addHost(strings.ToLower(s.Target))
				}
			}
		}
	}
	usable := addrs[:0]
	for _, a := range addrs {
		if trustable(a) {
			usable = append(usable, a)
		}
	}
	slices.SortFunc(usable, netip.Addr.Compare)
	usable = slices.Compact(usable)
	switch {
	case !answered:
		return nil, 0, fmt.Errorf("lookup %s: %w", host, errors.Join(errs...))
	case len(usable) == 0:
		return nil, 0, fmt.Errorf("lookup %s: no usable address (%d found)", host, len(addrs))
	case len(usable) > maxAddrs:
		return nil, 0, fmt.Errorf("lookup %s: %d addresses, more than the %d a trusted name may have", host, len(usable), maxAddrs)
	}
	return usable, min(max(ttl, MinTTL), MaxTTL), nil
}

// trustable says whether an address from DNS may be trusted: a public unicast host, never a
// private, loopback or link-local one (a poisoned or rebinding answer must not open the LAN).
func trustable(a netip.Addr) bool {
	return a.IsGlobalUnicast() && !a.IsPrivate()
}

func addrOf(rr dns.RR) (netip.Addr, bool) {
	switch v := rr.(type) {
	case *dns.A:
		a, ok := netip.AddrFromSlice(v.A.To4())
		return a, ok
	case *dns.AAAA:
		a, ok := netip.AddrFromSlice(v.AAAA.To16())
		return a.Unmap(), ok
	}
	return netip.Addr{}, false
}

// querier asks the servers in turn until one answers.
type querier struct {
	servers []netip.AddrPort
}

// ask returns the answer's records of type t for name; NXDOMAIN and no data are an empty
// answer, not an error.
func (q *querier) ask(ctx context.Context, name string, t uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: 2 * time.Second}
	var errs []error
	for _, s := range q.servers {
		in, _, err := c.ExchangeContext(ctx, m, s.String())
		if err == nil && in.Truncated {
			tc := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
			in, _, err = tc.ExchangeContext(ctx, m, s.String())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			continue
		}
		switch in.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			var out []dns.RR
			for _, rr := range in.Answer {
				if rr.Header().Rrtype == t {
					out = append(out, rr)
				}
			}
			if t == dns.TypeSRV {
				if len(out) == 0 {
					return nil, errors.New("no SRV records")
				}
			}
			return out, nil
		default:
			errs = append(errs, fmt.Errorf("%s: %s", s, dns.RcodeToString[in.Rcode]))
		}
	}
	return nil, errors.Join(errs...)
}
