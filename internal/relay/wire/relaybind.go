package wire

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Path memory of the relay.
const (
	maxPaths     = 8                // per office: a box has a few lines, an attacker can't add any
	dupFresh     = 3 * time.Second  // a path gets duplicates while its probes arrive
	statusFresh  = 60 * time.Second // a path is shown, then forgotten
	seqMemory    = 2 * maxSkew      // a line's last seq outlives any request that could replay it
	lineIDsCount = 256
)

// Office is one box the relay serves, keyed by its WireGuard public key.
type Office struct {
	Name string
}

// RelayOptions configure the relay's side of the tunnel.
type RelayOptions struct {
	Listen  netip.AddrPort // address (unspecified: all) and port; Open's port wins when not 0
	Private wgtypes.Key    // the relay's WireGuard private key
	Log     *slog.Logger
}

// Path is where one of an office's lines was last heard from.
type Path struct {
	Addr      netip.AddrPort
	Line      uint8
	LastSeen  time.Time
	Duplicate bool // its latest probe asked for duplication
}

// RelayBind is the relay's conn.Bind: a plain UDP socket that answers the boxes' probes,
// remembers each office's paths, and duplicates to them when the office asks.
type RelayBind struct {
	opts   RelayOptions
	public wgtypes.Key
	epoch  uint32 // told in every reply: a restarted relay has another
	ns     netns.NsHandle
	log    *slog.Logger
	mark   atomic.Uint32

	mu      sync.RWMutex
	offices map[wgtypes.Key]*office
	byAddr  map[netip.AddrPort]*office

	s       atomic.Pointer[sock]
	sessMu  sync.Mutex
	done    chan struct{} // nil while closed
	rejects countLog
	drops   countLog
}

type office struct {
	name  string
	key   probeKey
	dup   bool
	paths []Path
	seq   [lineIDsCount]uint64
	seqAt [lineIDsCount]time.Time
}

var _ conn.Bind = (*RelayBind)(nil)

// NewRelayBind makes the relay's bind; its socket is opened in the calling thread's network
// namespace.
func NewRelayBind(o RelayOptions) (*RelayBind, error) {
	if o.Private == (wgtypes.Key{}) {
		return nil, errors.New("wire: no relay private key")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &RelayBind{opts: o, public: o.Private.PublicKey(), epoch: newEpoch(), log: o.Log,
		offices: map[wgtypes.Key]*office{}, byAddr: map[netip.AddrPort]*office{}}
	r.rejects = newCountLog(o.Log, rejectMsg)
	r.drops = newCountLog(o.Log, "relay tunnel: outer packets the socket refused")
	r.ns = callerNS()
	return r, nil
}

// PublicKey is the relay's WireGuard public key.
func (r *RelayBind) PublicKey() wgtypes.Key { return r.public }

// SetOffices sets the boxes whose probes are believed. An office that stays (same key and
// name) keeps its paths. A key that can't agree on a probe key is left out, with an error.
func (r *RelayBind) SetOffices(m map[wgtypes.Key]Office) error {
	var errs []error
	next := make(map[wgtypes.Key]*office, len(m))
	for k, o := range m {
		pk, err := deriveKey(r.opts.Private, k)
		if err != nil {
			errs = append(errs, fmt.Errorf("office %s: %w", o.Name, err))
			continue
		}
		next[k] = &office{name: o.Name, key: pk}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, o := range r.offices {
		if n, ok := next[k]; ok && n.name == o.name {
			next[k] = o
			continue
		}
		for _, p := range o.paths {
			if r.byAddr[p.Addr] == o {
				delete(r.byAddr, p.Addr)
			}
		}
	}
	r.offices = next
	return errors.Join(errs...)
}

// Paths returns an office's paths heard from in the last minute, by line.
func (r *RelayBind) Paths(officeName string) []Path {
	now := time.Now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Path
	for _, o := range r.offices {
		if o.name != officeName {
			continue
		}
		for _, p := range o.paths {
			if now.Sub(p.LastSeen) <= statusFresh {
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// Rejected counts probe-looking datagrams that were not believed.
func (r *RelayBind) Rejected() uint64 { return r.rejects.n.Load() }

// Open listens on the configured address and port (port, when not 0).
func (r *RelayBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	r.sessMu.Lock()
	defer r.sessMu.Unlock()
	if r.done != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if port == 0 {
		port = r.opts.Listen.Port()
	}
	var so *sock
	err := inNS(r.ns, func() (err error) {
		so, err = listen(r.opts.Listen.Addr(), port, socketOpts{tos: true, mark: r.mark.Load()})
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("wire: listen on %s port %d: %w", r.opts.Listen.Addr(), port, err)
	}
	done := make(chan struct{})
	r.done = done
	r.s.Store(so)
	return []conn.ReceiveFunc{r.receiveFunc(so, done)}, so.port(), nil
}

// Close closes the socket; the receive function returns net.ErrClosed.
func (r *RelayBind) Close() error {
	r.sessMu.Lock()
	defer r.sessMu.Unlock()
	if r.done == nil {
		return nil
	}
	close(r.done)
	r.done = nil
	if so := r.s.Swap(nil); so != nil {
		return so.c.Close()
	}
	return nil
}

// SetMark sets SO_MARK on the socket.
func (r *RelayBind) SetMark(mark uint32) error {
	r.mark.Store(mark)
	if so := r.s.Load(); so != nil {
		return so.setMark(mark)
	}
	return nil
}

// ParseEndpoint parses "ip:port".
func (r *RelayBind) ParseEndpoint(s string) (conn.Endpoint, error) { return parseEndpoint(s) }

// BatchSize is 1.
func (r *RelayBind) BatchSize() int { return 1 }

// Send writes bufs to ep and, when ep is a path of an office that asks for duplication, to
// the office's other paths heard from in the last 3 s. It never waits on the socket.
func (r *RelayBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	so := r.s.Load()
	if so == nil {
		return net.ErrClosed
	}
	dst := e.AddrPort
	var extra [maxPaths]netip.AddrPort
	n := 0
	r.mu.RLock()
	if o := r.byAddr[dst]; o != nil && o.dup {
		now := time.Now()
		for _, p := range o.paths {
			if p.Addr != dst && now.Sub(p.LastSeen) <= dupFresh {
				extra[n] = p.Addr
				n++
			}
		}
	}
	r.mu.RUnlock()
	for _, buf := range bufs {
		err := so.send(buf, dst)
		for _, a := range extra[:n] {
			if so.send(buf, a) == nil {
				err = nil
			}
		}
		if err != nil {
			// Counted, not returned: wireguard-go logs each failed packet.
			r.drops.add(time.Now())
		}
	}
	return nil
}

// Dropped counts outer packets the socket refused (no route to a box, a full buffer).
func (r *RelayBind) Dropped() uint64 { return r.drops.n.Load() }

func (r *RelayBind) receiveFunc(so *sock, done chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			n, src, err := so.c.ReadFromUDPAddrPort(bufs[0])
			if err != nil {
				// Anything but Close is passing (ENOMEM...): WireGuard would give up on the
				// socket after a few errors, so wait a moment and read on.
				t := time.NewTimer(100 * time.Millisecond)
				select {
				case <-done:
					t.Stop()
					return 0, net.ErrClosed
				case <-t.C:
				}
				continue
			}
			src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			if isProbe(bufs[0][:n]) {
				r.answer(so, bufs[0][:n], src, time.Now())
				continue
			}
			sizes[0] = n
			eps[0] = &conn.StdNetEndpoint{AddrPort: src}
			return 1, nil
		}
	}
}

// answer replies to an authenticated, fresh probe request and records its path; anything
// else costs a counter.
func (r *RelayBind) answer(so *sock, msg []byte, src netip.AddrPort, now time.Time) {
	p, err := parse(msg)
	if err != nil || p.kind != kindRequest {
		r.rejects.add(now)
		return
	}
	r.mu.RLock()
	o := r.offices[p.sender]
	r.mu.RUnlock()
	if o == nil || !verify(msg, &o.key) {
		r.rejects.add(now)
		return
	}
	if d := now.Sub(time.Unix(0, p.stamp)); d > maxSkew || d < -maxSkew {
		r.rejects.add(now)
		return
	}
	r.mu.Lock()
	ok := r.offices[p.sender] == o && r.accept(o, p, src, now)
	r.mu.Unlock()
	if !ok {
		r.rejects.add(now)
		return
	}
	p.kind, p.sender, p.epoch = kindReply, r.public, r.epoch
	var out [probeSize]byte // never bigger than the request: no amplification
	_ = so.send(p.marshal(out[:], &o.key), src)
}

// accept checks p's seq is new for its line and records the path; r.mu is held.
func (r *RelayBind) accept(o *office, p probe, src netip.AddrPort, now time.Time) bool {
	if !o.seqAt[p.line].IsZero() && now.Sub(o.seqAt[p.line]) < seqMemory && p.seq <= o.seq[p.line] {
		return false
	}
	o.seq[p.line], o.seqAt[p.line] = p.seq, now
	o.dup = p.flags&flagDuplicate != 0
	// Forget paths not heard from for a minute.
	kept := o.paths[:0]
	for _, q := range o.paths {
		if now.Sub(q.LastSeen) <= statusFresh {
			kept = append(kept, q)
		} else {
			r.forget(o, q.Addr)
		}
	}
	o.paths = kept
	np := Path{Addr: src, Line: p.line, LastSeen: now, Duplicate: o.dup}
	i := -1
	for j, q := range o.paths {
		if q.Line == p.line {
			i = j
		}
	}
	switch {
	case i >= 0:
		if o.paths[i].Addr != src {
			r.forget(o, o.paths[i].Addr)
		}
		o.paths[i] = np
	case len(o.paths) < maxPaths:
		o.paths = append(o.paths, np)
	default:
		oldest := 0
		for j, q := range o.paths {
			if q.LastSeen.Before(o.paths[oldest].LastSeen) {
				oldest = j
			}
		}
		r.forget(o, o.paths[oldest].Addr)
		o.paths[oldest] = np
	}
	r.byAddr[src] = o
	return true
}

// forget drops addr, a path o no longer has, from the address index (unless another office
// took the address since).
func (r *RelayBind) forget(o *office, addr netip.AddrPort) {
	if r.byAddr[addr] == o {
		delete(r.byAddr, addr)
	}
}
