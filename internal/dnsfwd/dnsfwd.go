// Package dnsfwd answers the office's DNS on the LAN: local names itself, the rest through the active uplink's resolvers.
package dnsfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/perclient"
	"github.com/officeedge/appliance/wan"
)

// Options say where the forwarder listens, whom it answers and whom it asks.
type Options struct {
	// Listen are the LAN addresses (port 53) it serves on: never an uplink's.
	Listen []netip.AddrPort
	// LAN are the office's subnets: the only clients answered, and addresses no public
	// name may resolve to.
	LAN []netip.Prefix
	// Clients are more networks answered besides the LAN: the VPN's remote phones, whose
	// configs name the box as their DNS server.
	Clients []netip.Prefix
	// WAN is the failover part's status: its active uplink is the way out.
	WAN func() (wan.Status, bool)
	// Bus wakes the forwarder at once when wan reports a switch; without it (or when an
	// event is missed) the status is read every checkEvery.
	Bus *events.Bus
	// Learned are the resolvers an uplink got by DHCP, as wan's status says.
	Learned func(wan.UplinkStatus) []netip.Addr
	// Configured are each uplink's resolvers from [dns] resolvers.
	Configured map[wan.Role][]netip.Addr
	// System are the resolvers the box had before (resolv.conf): the last resort.
	System []netip.Addr
	// Domain is the local domain; BoxName names the box in it.
	Domain, BoxName string
	// Static are local names from the config (the box, the PBX): label to addresses.
	Static map[string][]netip.Addr
	// Hosts are the DHCP server's hostnames (label to address), read at each query.
	Hosts func() map[string]netip.Addr
	// CacheSize bounds the answers kept.
	CacheSize int
	// RebindAllow are public domains that may answer with private addresses.
	RebindAllow []string
	// RateLimit is queries a second per client; more are dropped.
	RateLimit int
	Log       *slog.Logger
}

// checkEvery is how often wan's status is read for a new active uplink, in case an event
// was missed: well inside the second a switch may take.
const checkEvery = 200 * time.Millisecond

// Forwarder is the LAN's DNS server.
type Forwarder struct {
	o       Options
	cache   *cache
	lim     *perclient.Limiter
	up      atomic.Pointer[Upstream]
	serving atomic.Bool
	stats   counters
}

type counters struct {
	queries, cached, local, forwarded, failed, rebind, limited, refused atomic.Uint64
}

// Stats are the forwarder's counters since start, for the page and /metrics.
type Stats struct {
	Serving   bool      `json:"serving"`
	Upstream  *Upstream `json:"upstream"`
	Queries   uint64    `json:"queries"`
	Cached    uint64    `json:"cached"`    // answered from the cache
	Local     uint64    `json:"local"`     // answered from local names
	Forwarded uint64    `json:"forwarded"` // asked of the uplink's resolvers
	Failed    uint64    `json:"failed"`    // no resolver answered: SERVFAIL
	Rebind    uint64    `json:"rebind"`    // public names answering with private addresses, refused
	Limited   uint64    `json:"limited"`   // dropped: the client asked too fast
	Refused   uint64    `json:"refused"`   // not from the LAN, or not a query
	CacheLen  int       `json:"cache_entries"`
}

// New makes a forwarder; Run serves it.
func New(o Options) *Forwarder {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Domain = strings.TrimSuffix(strings.ToLower(o.Domain), ".")
	return &Forwarder{o: o, cache: newCache(max(o.CacheSize, 16)), lim: perclient.New(max(o.RateLimit, 1), 2*max(o.RateLimit, 1), 4096)}
}

// Stats reads the counters.
func (f *Forwarder) Stats() Stats {
	c := &f.stats
	return Stats{Serving: f.serving.Load(), Upstream: f.up.Load(), Queries: c.queries.Load(), Cached: c.cached.Load(),
		Local: c.local.Load(), Forwarded: c.forwarded.Load(), Failed: c.failed.Load(), Rebind: c.rebind.Load(),
		Limited: c.limited.Load(), Refused: c.refused.Load(), CacheLen: f.cache.len()}
}

// Run serves UDP and TCP on every Listen address until ctx ends; a listener that fails
// ends Run with its error (the supervisor starts it again).
func (f *Forwarder) Run(ctx context.Context) error {
	if len(f.o.Listen) == 0 {
		return errors.New("dnsfwd: no LAN address to listen on")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.refresh()
	var servers []*dns.Server
	errc := make(chan error, 2*len(f.o.Listen))
	var wg sync.WaitGroup
	defer func() {
		f.serving.Store(false)
		for _, s := range servers {
			_ = s.Shutdown()
		}
		wg.Wait()
	}()
	lc := net.ListenConfig{Control: Freebind}
	for _, a := range f.o.Listen {
		pc, err := lc.ListenPacket(ctx, "udp", a.String())
		if err != nil {
			return fmt.Errorf("dnsfwd: listen udp %s: %w", a, err)
		}
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: f, Net: "udp"})
		ln, err := lc.Listen(ctx, "tcp", a.String())
		if err != nil {
			return fmt.Errorf("dnsfwd: listen tcp %s: %w", a, err)
		}
		servers = append(servers, &dns.Server{Listener: ln, Handler: f, Net: "tcp",
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }})
	}
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ActivateAndServe(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("dnsfwd: serve %s: %w", s.Net, err)
			}
		}()
	}
	f.serving.Store(true)
	f.o.Log.Info("dns forwarder serving", "listen", fmt.Sprint(f.o.Listen), "upstream", f.up.Load().String())
	var wake <-chan events.Event
	if f.o.Bus != nil {
		ch, unsub := f.o.Bus.Subscribe(16)
		defer unsub()
		wake = ch
	}
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case e, ok := <-wake:
			if !ok {
				wake = nil
			} else if e.Source == "wan" {
				f.refresh()
			}
		case <-tick.C:
			f.refresh()
		}
	}
}

// refresh follows the active uplink. The cache is emptied on a switch: answers of one
// ISP's resolver (its own names, its CDN's choices) need not hold through the other.
func (f *Forwarder) refresh() {
	next := f.pick()
	prev := f.up.Load()
	if next.same(prev) {
		return
	}
	f.up.Store(next)
	if prev != nil {
		f.cache.flush()
	}
	f.o.Log.Info("dns upstream", "now", next.String(), "was", prev.String())
	if f.o.Bus != nil && prev != nil {
		f.o.Bus.Publish(events.Event{Kind: "dns.upstream", Source: "dns",
			Message: "DNS queries now go to " + next.String(), Fields: map[string]string{"was": prev.String()}})
	}
}

// Freebind is a ListenConfig Control that sets IP_FREEBIND: the LAN address may still be on
// its way (the firewall owner sets it); the socket takes it as soon as it is there.
func Freebind(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		if serr == nil {
			// Harmless on IPv4 sockets; IPv6 ones need their own.
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
		}
	}); err != nil {
		return err
	}
	return serr
}

// client is the address a query came from.
func client(w dns.ResponseWriter) netip.Addr {
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// answers says whether a query from a is answered: it comes from the LAN or a VPN phone.
func (f *Forwarder) answers(a netip.Addr) bool {
	return slices.ContainsFunc(f.o.LAN, func(p netip.Prefix) bool { return p.Contains(a) }) ||
		slices.ContainsFunc(f.o.Clients, func(p netip.Prefix) bool { return p.Contains(a) })
}

// ServeDNS answers one query.
func (f *Forwarder) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	f.stats.queries.Add(1)
	from := client(w)
	if !f.lim.Allow(from) {
		f.stats.limited.Add(1)
		return
	}
	if !f.answers(from) || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 || r.Response {
		f.stats.refused.Add(1)
		m := new(dns.Msg).SetRcode(r, dns.RcodeRefused)
		if r.Opcode != dns.OpcodeQuery {
			m.Rcode = dns.RcodeNotImplemented
		}
		_ = w.WriteMsg(m)
		return
	}
	resp := f.answer(r)
	resp.Id = r.Id
	if r.IsEdns0() == nil {
		// An answer kept from a client that spoke EDNS, for one that does not.
		resp.Extra = slices.DeleteFunc(resp.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(max(o.UDPSize(), dns.MinMsgSize))
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

func (f *Forwarder) answer(r *dns.Msg) *dns.Msg {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if label, ok := f.localLabel(name, q.Qtype); ok && q.Qclass == dns.ClassINET {
		f.stats.local.Add(1)
		return f.answerLocal(r, label)
	}
	if a, ok := reverseAddr(name); ok {
		if m, ok := f.answerPTR(r, a); ok {
			f.stats.local.Add(1)
			return m
		}
	}
	k := keyOf(r)
	if m, ok := f.cache.get(k, time.Now()); ok {
		f.stats.cached.Add(1)
		return m
	}
	up := f.up.Load()
	fwd := r.Copy()
	fwd.Id = dns.Id()
	ctx, cancel := context.WithTimeout(context.Background(), 2*tryTimeout)
	defer cancel()
	m, err := up.exchange(ctx, fwd)
	if err != nil {
		f.stats.failed.Add(1)
		f.o.Log.Debug("dns forward failed", "name", q.Name, "err", err)
		return new(dns.Msg).SetRcode(r, dns.RcodeServerFailure)
	}
	f.stats.forwarded.Add(1)
	if f.rebinding(name, m) {
		f.stats.rebind.Add(1)
		f.o.Log.Warn("dns rebinding refused: a public name answered with a private address", "name", q.Name)
		out := new(dns.Msg).SetRcode(r, dns.RcodeRefused)
		out.SetEdns0(dns.DefaultMsgSize, false)
		opt := out.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked,
			ExtraText: "a public name may not answer with an address of the office (DNS rebinding)"})
		return out
	}
	f.cache.put(k, m, time.Now())
	return m
}
