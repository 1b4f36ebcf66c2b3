// Package dnsfwd answers the office's DNS on the LAN: local names itself, the rest through the active uplink's resolvers.
package dnsfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/perclient"
	"github.com/officeedge/appliance/internal/udpbuf"
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
	// Watch wakes the forwarder at once when wan's state changes (wan.Service.Watch);
	// without it the status is read every checkEvery.
	Watch func() (<-chan struct{}, func())
	// Bus is where a change of resolvers is recorded (the history); nil records nothing.
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
	// RateLimit is queries a second per client, RateBurst how many it may ask at once;
	// more are answered REFUSED.
	RateLimit, RateBurst int
	// Fixed are the resolvers asked when WAN is nil (a box whose uplink no failover part
	// watches).
	Fixed []netip.AddrPort
	Log   *slog.Logger
}

// maxInflight bounds the queries waiting on a resolver, and the goroutines (workers) that
// wait: past it a query that needs one is answered SERVFAIL at once. An office asks a few
// hundred new names a second at most; a resolver answers in tens of milliseconds.
const maxInflight = 512

// maxTCP bounds the TCP connections served at once (one goroutine each).
const maxTCP = 128

// reportEvery is how often floods are summarised in the log: one line per kind and period.
const reportEvery = 10 * time.Second

// checkEvery is how often wan's status is read for a new active uplink when there is no
// watch on it: well inside the second a switch may take.
const checkEvery = 200 * time.Millisecond

// Forwarder is the LAN's DNS server.
type Forwarder struct {
	o         Options
	cache     *cache
	lim       *perclient.Limiter
	up        atomic.Pointer[Upstream]
	serving   atomic.Bool
	stats     counters
	slots     chan struct{} // one per query waiting on a resolver
	inMu      sync.Mutex
	inBy      map[netip.Addr]int // slots held per client
	jobs      chan job           // to idle workers
	workers   atomic.Int32
	stopping  chan struct{} // closed when Run ends: workers leave
	wg        sync.WaitGroup
	flight    singleflight.Group
	overLimit *perclient.Tally
	tooBusy   *perclient.Tally
	// rebindLogged: a rebinding answer was logged this report period; rebindSeen is the
	// count at the last report.
	rebindLogged atomic.Bool
	rebindSeen   atomic.Uint64
}

type counters struct {
	queries, cached, local, forwarded, coalesced, failed, rebind, limited, refused, busy atomic.Uint64
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
	Coalesced uint64    `json:"coalesced"` // waited on the same question already asked
	Limited   uint64    `json:"limited"`   // REFUSED: the client asked too fast
	Refused   uint64    `json:"refused"`   // not from the LAN, or not a query
	Busy      uint64    `json:"busy"`      // SERVFAIL: too many queries waiting on resolvers
	CacheLen  int       `json:"cache_entries"`
}

// New makes a forwarder; Run serves it.
func New(o Options) *Forwarder {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Domain = strings.TrimSuffix(strings.ToLower(o.Domain), ".")
	rate := max(o.RateLimit, 1)
	return &Forwarder{o: o, cache: newCache(max(o.CacheSize, 16)), lim: perclient.New(rate, max(o.RateBurst, rate), 4096),
		slots: make(chan struct{}, maxInflight), inBy: map[netip.Addr]int{}, jobs: make(chan job), overLimit: perclient.NewTally(256), tooBusy: perclient.NewTally(256)}
}

// Stats reads the counters.
func (f *Forwarder) Stats() Stats {
	c := &f.stats
	return Stats{Serving: f.serving.Load(), Upstream: f.up.Load(), Queries: c.queries.Load(), Cached: c.cached.Load(),
		Local: c.local.Load(), Forwarded: c.forwarded.Load(), Coalesced: c.coalesced.Load(), Failed: c.failed.Load(),
		Rebind: c.rebind.Load(), Limited: c.limited.Load(), Refused: c.refused.Load(), Busy: c.busy.Load(), CacheLen: f.cache.len()}
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
	f.stopping = make(chan struct{})
	var servers []*dns.Server
	var conns []*net.UDPConn
	readers := max(runtime.GOMAXPROCS(0), 2)
	errc := make(chan error, (readers+1)*len(f.o.Listen))
	var wg sync.WaitGroup
	defer func() {
		f.serving.Store(false)
		for _, s := range servers {
			_ = s.Shutdown()
		}
		for _, c := range conns {
			_ = c.Close()
		}
		wg.Wait() // no reader hands out jobs any more
		close(f.stopping)
		f.wg.Wait()
	}()
	lc := net.ListenConfig{Control: bind.Freebind}
	// One UDP socket per reader (SO_REUSEPORT: the kernel spreads clients over them): two
	// goroutines reading one socket take turns on its lock, so only this uses both cores.
	ulc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return errors.Join(serr, bind.Freebind(network, address, c))
	}}
	for _, a := range f.o.Listen {
		for range readers {
			pc, err := ulc.ListenPacket(ctx, "udp", a.String())
			if err != nil {
				return fmt.Errorf("dnsfwd: listen udp %s: %w", a, err)
			}
			conns = append(conns, pc.(*net.UDPConn))
			udpbuf.Grow(pc)
		}
		ln, err := lc.Listen(ctx, "tcp", a.String())
		if err != nil {
			return fmt.Errorf("dnsfwd: listen tcp %s: %w", a, err)
		}
		servers = append(servers, &dns.Server{Listener: netutil.LimitListener(ln, maxTCP), Handler: f, Net: "tcp",
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second },
			MaxTCPQueries: 1000})
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
	// UDP is read by one goroutine per socket, no more: a query answered from the cache
	// costs two system calls and a copy; one that needs a resolver takes a slot.
	for _, pc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.newUDPReader(pc).serve(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("dnsfwd: serve udp %s: %w", pc.LocalAddr(), err)
			}
		}()
	}
	report := time.NewTicker(reportEvery)
	defer report.Stop()
	f.serving.Store(true)
	f.o.Log.Info("dns forwarder serving", "listen", fmt.Sprint(f.o.Listen), "upstream", f.up.Load().String())
	var wake <-chan struct{}
	var poll <-chan time.Time
	if f.o.Watch != nil {
		ch, stop := f.o.Watch()
		defer stop()
		wake = ch
		f.refresh() // a change between the first refresh and the watch
	} else if f.o.WAN != nil {
		tick := time.NewTicker(checkEvery)
		defer tick.Stop()
		poll = tick.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-wake:
			f.refresh()
		case <-poll:
			f.refresh()
		case <-report.C:
			f.report()
		}
	}
}

// noteLimited counts a query of a over its limit: a line at once for the first of a
// period, the rest in report's summary.
func (f *Forwarder) noteLimited(a netip.Addr) {
	f.stats.limited.Add(1)
	if f.overLimit.Add(a) {
		f.o.Log.Warn("dns: client over the per-client limit, answering REFUSED (summary follows)", "client", a.String())
	}
}

// report summarises the clients turned away since the last report: one line per kind.
func (f *Forwarder) report() {
	f.overLimit.Take().Log(f.o.Log, "dns: clients over the per-client limit answered REFUSED")
	f.tooBusy.Take().Log(f.o.Log, "dns: too many queries waiting on resolvers, answered SERVFAIL")
	n := f.stats.rebind.Load()
	if d := n - f.rebindSeen.Swap(n); d > 1 {
		f.o.Log.Warn("dns: rebinding answers refused", "count", d)
	}
	f.rebindLogged.Store(false)
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

// ServeDNS answers one query over TCP (UDP has its own loop: udpReader).
func (f *Forwarder) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	f.stats.queries.Add(1)
	from := client(w)
	if !f.lim.Allow(from) {
		f.noteLimited(from)
		_ = w.WriteMsg(new(dns.Msg).SetRcode(r, dns.RcodeRefused))
		return
	}
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	_ = w.WriteMsg(f.ServeMsg(r, from, udp))
}

// ServeMsg is the answer to r from a client allowed by the rate limit, truncated to what
// the client takes over UDP. It waits for a resolver when one must be asked.
func (f *Forwarder) ServeMsg(r *dns.Msg, from netip.Addr, udp bool) *dns.Msg {
	resp := f.answerHere(r, from)
	if resp == nil {
		resp = f.answerWithSlot(r, from)
	}
	return finish(r, resp, udp)
}

// answerWithSlot asks a resolver within from's share of the slots, or answers SERVFAIL at
// once when there is none.
func (f *Forwarder) answerWithSlot(r *dns.Msg, from netip.Addr) *dns.Msg {
	if !f.acquire(from) {
		return f.busyAnswer(r, from)
	}
	defer f.release(from)
	return f.answerUpstream(r)
}

func (f *Forwarder) busyAnswer(r *dns.Msg, from netip.Addr) *dns.Msg {
	f.stats.busy.Add(1)
	if f.tooBusy.Add(from) {
		f.o.Log.Warn("dns: too many queries waiting on resolvers, answering SERVFAIL (summary follows)", "client", from.String())
	}
	return new(dns.Msg).SetRcode(r, dns.RcodeServerFailure)
}

// finish gives resp r's ID, and the size and EDNS the client takes.
func finish(r, resp *dns.Msg, udp bool) *dns.Msg {
	resp.Id = r.Id
	if r.IsEdns0() == nil {
		// An answer kept from a client that spoke EDNS, for one that does not.
		resp.Extra = slices.DeleteFunc(resp.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	}
	if udp {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(max(o.UDPSize(), dns.MinMsgSize))
		}
		resp.Truncate(size)
	}
	return resp
}

// perClientInflight is one client's share of the slots: a flood of names from one device
// leaves the others room even while a resolver is slow.
const perClientInflight = maxInflight / 4

// acquire takes a slot for a query of a that needs a resolver; false when none is left.
func (f *Forwarder) acquire(a netip.Addr) bool {
	select {
	case f.slots <- struct{}{}:
	default:
		return false
	}
	f.inMu.Lock()
	defer f.inMu.Unlock()
	if f.inBy[a] >= perClientInflight {
		<-f.slots
		return false
	}
	f.inBy[a]++
	return true
}

func (f *Forwarder) release(a netip.Addr) {
	f.inMu.Lock()
	if f.inBy[a]--; f.inBy[a] <= 0 {
		delete(f.inBy, a)
	}
	f.inMu.Unlock()
	<-f.slots
}

// answer is the answer to r, asking a resolver if need be (with no client's share: tests).
func (f *Forwarder) answer(r *dns.Msg) *dns.Msg {
	if m := f.answerHere(r, netip.Addr{}); m != nil {
		return m
	}
	return f.answerUpstream(r)
}

// answerHere is the answer the box has for r without asking a resolver: a refusal, a
// local name, a reverse name of the office, a kept answer; nil when a resolver must be
// asked. from invalid: a query of the box itself (tests).
func (f *Forwarder) answerHere(r *dns.Msg, from netip.Addr) *dns.Msg {
	if (from.IsValid() && !f.answers(from)) || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 || r.Response {
		f.stats.refused.Add(1)
		m := new(dns.Msg).SetRcode(r, dns.RcodeRefused)
		if r.Opcode != dns.OpcodeQuery {
			m.Rcode = dns.RcodeNotImplemented
		}
		return m
	}
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
	if m, ok := f.cache.get(keyOf(r), r, time.Now()); ok {
		f.stats.cached.Add(1)
		return m
	}
	return nil
}

// answerUpstream asks the active uplink's resolvers.
func (f *Forwarder) answerUpstream(r *dns.Msg) *dns.Msg {
	q := r.Question[0]
	k := keyOf(r)
	// One question in flight at a time: the clients asking the same meanwhile share its
	// answer (and a flood of one name costs one upstream query).
	v, err, shared := f.flight.Do(k, func() (any, error) { return f.forward(r, k) })
	if shared {
		f.stats.coalesced.Add(1)
	}
	if err != nil {
		f.o.Log.Debug("dns forward failed", "name", q.Name, "err", err)
		return new(dns.Msg).SetRcode(r, dns.RcodeServerFailure)
	}
	m := v.(*dns.Msg)
	if m == errRebind {
		out := new(dns.Msg).SetRcode(r, dns.RcodeRefused)
		out.SetEdns0(dns.DefaultMsgSize, false)
		opt := out.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked,
			ExtraText: "a public name may not answer with an address of the office (DNS rebinding)"})
		return out
	}
	m = m.Copy() // shared with the other waiters
	m.Question = r.Question
	return m
}

// errRebind stands for a refused rebinding answer among forward's results.
var errRebind = new(dns.Msg)

// forward asks the upstream r's question (lower case: the answer's names then compress
// onto the question whatever case the client wrote), and keeps the answer under k.
func (f *Forwarder) forward(r *dns.Msg, k string) (*dns.Msg, error) {
	q := r.Question[0]
	fwd := new(dns.Msg)
	fwd.Id = dns.Id()
	fwd.RecursionDesired = true
	fwd.CheckingDisabled = r.CheckingDisabled
	fwd.Question = []dns.Question{{Name: strings.ToLower(q.Name), Qtype: q.Qtype, Qclass: q.Qclass}}
	if o := r.IsEdns0(); o != nil {
		fwd.SetEdns0(ednsSize, o.Do())
	}
	m, err := f.up.Load().exchange(fwd)
	if err != nil {
		f.stats.failed.Add(1)
		return nil, err
	}
	f.stats.forwarded.Add(1)
	if f.rebinding(strings.ToLower(q.Name), m) {
		f.stats.rebind.Add(1)
		if f.rebindLogged.CompareAndSwap(false, true) { // the first of a report period; report counts the rest
			f.o.Log.Warn("dns rebinding refused: a public name answered with a private address", "name", q.Name)
		}
		return errRebind, nil
	}
	f.cache.put(k, m, time.Now())
	return m, nil
}
