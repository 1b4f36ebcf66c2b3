package wire

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/netcfg"
)

// Line is one of the box's uplinks the tunnel may use.
type Line struct {
	Name      string // the uplink's name, for stats and logs
	Interface string // its network interface
}

// BoxOptions configure the box's side of the tunnel.
type BoxOptions struct {
	Lines       []Line
	Private     wgtypes.Key           // the box's WireGuard private key
	RelayPublic wgtypes.Key           // the relay's WireGuard public key
	Relay       func() netip.AddrPort // the relay's endpoint (resolved by the caller), where probes go
	ProbeEvery  time.Duration         // probe interval of the lines in use; default 1 s
	// StandbyProbeEvery is the probe interval of a line that carries nothing (not the current
	// line, duplication off): a probe and its reply are ~200 bytes, 500 MB a month at 1 s on
	// a metered modem. Default 10 × ProbeEvery.
	StandbyProbeEvery time.Duration
	// RelayRestarted is called when the relay's authenticated replies carry another epoch
	// than before: it restarted and lost its WireGuard sessions, and waits for the box's
	// handshake. Called from a goroutine of the bind's (never the receive path), once per
	// change; changes that come faster than it returns are told once.
	RelayRestarted func()
	Log            *slog.Logger
}

// BoxBind is the box's conn.Bind: one UDP socket per line, bound to the line's interface, so
// an outer packet leaves through the line chosen for it with that line's source address,
// whatever the main routing table prefers.
type BoxBind struct {
	opts   BoxOptions
	key    probeKey
	public wgtypes.Key
	ns     netns.NsHandle // the namespace sockets are opened in (none: the process's)
	log    *slog.Logger
	lines  []*boxLine

	cur  atomic.Int32
	dup  atomic.Bool
	mark atomic.Uint32
	seq  atomic.Uint64
	kick chan struct{} // wakes the session's loop: reopen a socket, probe now

	rejects countLog
	drops   countLog // outer packets no line could take

	epochMu   sync.Mutex
	epoch     uint32        // the relay's, from the newest authenticated reply (0: none yet)
	epochSeq  uint64        // the probe that reply answered: an older probe's can't set it back
	restarted chan struct{} // 1-buffered: the epoch changed, RelayRestarted is due

	mu   sync.Mutex
	sess *boxSession
}

type boxSession struct {
	done chan struct{}
	wg   sync.WaitGroup
	port uint16
	nl   *netlink.Handle
}

var _ conn.Bind = (*BoxBind)(nil)

// NewBoxBind makes the box's bind. Its sockets are opened in the calling thread's network
// namespace.
func NewBoxBind(o BoxOptions) (*BoxBind, error) {
	if len(o.Lines) == 0 || len(o.Lines) > 255 {
		return nil, fmt.Errorf("wire: %d lines, want 1 to 255", len(o.Lines))
	}
	if o.Relay == nil {
		return nil, errors.New("wire: no relay endpoint")
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = time.Second
	}
	if o.StandbyProbeEvery <= 0 {
		o.StandbyProbeEvery = 10 * o.ProbeEvery
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	k, err := deriveKey(o.Private, o.RelayPublic)
	if err != nil {
		return nil, err
	}
	b := &BoxBind{opts: o, key: k, public: o.Private.PublicKey(), log: o.Log, kick: make(chan struct{}, 1),
		restarted: make(chan struct{}, 1)}
	b.rejects = newCountLog(o.Log, rejectMsg)
	b.drops = newCountLog(o.Log, "relay tunnel: outer packets dropped: no line could take them")
	for i, l := range o.Lines {
		b.lines = append(b.lines, &boxLine{id: uint8(i), Line: l, ready: make(chan struct{}, 1)})
	}
	// Probes start past any seq of an earlier run, so the relay believes them at once.
	b.seq.Store(uint64(time.Now().UnixNano()))
	b.ns = callerNS()
	return b, nil
}

// SetLine picks the line that carries the tunnel; the very next packet leaves through it.
func (b *BoxBind) SetLine(i int) {
	if i < 0 || i >= len(b.lines) {
		return
	}
	if int(b.cur.Swap(int32(i))) != i {
		b.lines[i].probeNow.Store(true) // it was probed sparingly as a standby line
		b.wake()
	}
}

// Line is the index of the line that carries the tunnel.
func (b *BoxBind) Line() int { return int(b.cur.Load()) }

// SetDuplicate sends every outer packet over every line whose probes are answered (and the
// current line always); the receiving WireGuard's replay window drops the second copy. The
// relay learns it from the next probes, sent at once.
func (b *BoxBind) SetDuplicate(on bool) {
	if b.dup.Swap(on) != on {
		for _, l := range b.lines {
			l.probeNow.Store(true)
		}
		b.wake()
	}
}

// Duplicate says whether duplication is on.
func (b *BoxBind) Duplicate() bool { return b.dup.Load() }

func (b *BoxBind) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Open opens a socket on every line whose interface exists (the others follow when it
// appears) and returns one receive function per line.
func (b *BoxBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	s := &boxSession{done: make(chan struct{}), port: port}
	var err error
	if b.ns.IsOpen() {
		s.nl, err = netlink.NewHandleAt(b.ns)
	} else {
		s.nl, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("wire: netlink: %w", err)
	}
	for _, l := range b.lines {
		b.reopen(s, l)
	}
	b.sess = s
	s.wg.Add(1)
	go b.run(s)
	if b.opts.RelayRestarted != nil {
		// Not in s.wg: the callback may reconfigure the device, which may close this bind.
		go b.notifyRestarts(s.done)
	}
	fns := make([]conn.ReceiveFunc, len(b.lines))
	for i, l := range b.lines {
		fns[i] = b.receiveFunc(s, l)
	}
	return fns, s.port, nil
}

// Close closes every line's socket; the receive functions return net.ErrClosed.
func (b *BoxBind) Close() error {
	b.mu.Lock()
	s := b.sess
	b.sess = nil
	b.mu.Unlock()
	if s == nil {
		return nil
	}
	close(s.done)
	s.wg.Wait()
	for _, l := range b.lines {
		if so := l.s.Swap(nil); so != nil {
			so.c.Close()
		}
	}
	s.nl.Close()
	return nil
}

// SetMark sets SO_MARK on the lines' sockets.
func (b *BoxBind) SetMark(mark uint32) error {
	b.mark.Store(mark)
	var errs []error
	for _, l := range b.lines {
		if so := l.s.Load(); so != nil {
			errs = append(errs, so.setMark(mark))
		}
	}
	return errors.Join(errs...)
}

// ParseEndpoint parses the relay's "ip:port".
func (b *BoxBind) ParseEndpoint(s string) (conn.Endpoint, error) { return parseEndpoint(s) }

// BatchSize is 1: voice is a few packets at a time.
func (b *BoxBind) BatchSize() int { return 1 }

var errNoSocket = errors.New("wire: line has no socket (interface missing)")

// Send writes bufs to ep through the current line, or with duplication through every
// reachable line too. It never waits on a line: a packet a line can't take now is dropped
// there, like a loss on the line. A packet no line took is counted, not returned as an error:
// wireguard-go would log every one of them, 50 a second per call on a dead line.
func (b *BoxBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	dst := e.AddrPort
	cur := b.lines[b.cur.Load()]
	dup := b.dup.Load()
	for _, buf := range bufs {
		err := b.sendOn(cur, buf, dst)
		sent := err == nil
		if dup || err != nil {
			now := time.Now()
			for _, l := range b.lines {
				if l == cur || !l.reachable(now) {
					continue
				}
				if b.sendOn(l, buf, dst) != nil {
					continue
				}
				if dup && sent {
					l.dupOut.Add(uint64(len(buf))) // after BytesOut: never more than it
				}
				sent = true
				if !dup {
					break // the current line failed: one other line is enough
				}
			}
		}
		if !sent {
			cur.sendErrs.Add(1)
			b.drops.add(time.Now())
		}
	}
	return nil
}

func (b *BoxBind) sendOn(l *boxLine, buf []byte, dst netip.AddrPort) error {
	so := l.s.Load()
	if so == nil {
		return errNoSocket
	}
	// Counted before it leaves: an answer may come back before this goroutine runs again,
	// and stats must never show the answer without the packet.
	n := uint64(len(buf))
	l.bytesOut.Add(n)
	if err := so.send(buf, dst); err != nil {
		l.bytesOut.Add(-n)
		if errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENXIO) {
			b.wake() // the interface went away: look for its successor now
		}
		return err
	}
	return nil
}

func (b *BoxBind) receiveFunc(s *boxSession, l *boxLine) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			so := l.s.Load()
			if so == nil {
				select {
				case <-s.done:
					return 0, net.ErrClosed
				case <-l.ready:
				}
				continue
			}
			n, src, err := so.c.ReadFromUDPAddrPort(bufs[0])
			if err != nil {
				select {
				case <-s.done:
					return 0, net.ErrClosed
				default:
				}
				if l.s.Load() == so {
					// Not replaced (yet): wait for its successor rather than spin.
					t := time.NewTimer(b.opts.ProbeEvery)
					select {
					case <-s.done:
						t.Stop()
						return 0, net.ErrClosed
					case <-l.ready:
					case <-t.C:
					}
					t.Stop()
				}
				continue
			}
			src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			if isProbe(bufs[0][:n]) {
				b.reply(l, bufs[0][:n], time.Now())
				continue
			}
			l.bytesIn.Add(uint64(n))
			sizes[0] = n
			eps[0] = &conn.StdNetEndpoint{AddrPort: src}
			return 1, nil
		}
	}
}

// reopen gives l a socket bound to its interface's current index: none while the interface
// is missing, a new one when it came back as a new interface.
func (b *BoxBind) reopen(s *boxSession, l *boxLine) {
	link, err := s.nl.LinkByName(l.Interface)
	if err != nil {
		if so := l.s.Swap(nil); so != nil {
			so.c.Close()
		}
		l.noteOpen(b.log, fmt.Errorf("interface %s: %w", l.Interface, err))
		return
	}
	idx := link.Attrs().Index
	if so := l.s.Load(); so != nil && so.ifindex == idx {
		return
	}
	o := socketOpts{bindDev: l.Interface, priority: netcfg.PriorityVoice, tos: true, mark: b.mark.Load()}
	var so *sock
	err = inNS(b.ns, func() (err error) {
		so, err = listen(netip.Addr{}, s.port, o)
		if errors.Is(err, syscall.EADDRINUSE) && s.port != 0 {
			// Another socket holds the port on this interface: any port does for the box.
			so, err = listen(netip.Addr{}, 0, o)
		}
		return err
	})
	if err != nil {
		l.noteOpen(b.log, fmt.Errorf("socket on %s: %w", l.Interface, err))
		return
	}
	so.ifindex = idx
	if s.port == 0 {
		s.port = so.port()
	}
	if old := l.s.Swap(so); old != nil {
		old.c.Close()
	}
	l.noteOpen(b.log, nil)
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// run keeps the lines' sockets current and probes them, until the session ends.
func (b *BoxBind) run(s *boxSession) {
	defer s.wg.Done()
	t := time.NewTicker(b.opts.ProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-b.kick:
		}
		for _, l := range b.lines {
			b.reopen(s, l)
		}
		now := time.Now()
		cur, dup := b.lines[b.cur.Load()], b.dup.Load()
		for _, l := range b.lines {
			every := b.opts.StandbyProbeEvery
			if l == cur || dup {
				every = b.opts.ProbeEvery
			}
			if l.probeDue(now, every) {
				b.probe(l, now, every, dup)
			}
			l.noteReachable(b.log, now)
		}
	}
}

// noteEpoch takes the epoch of an authenticated reply to probe seq, and signals a change.
func (b *BoxBind) noteEpoch(epoch uint32, seq uint64) {
	b.epochMu.Lock()
	defer b.epochMu.Unlock()
	if seq < b.epochSeq {
		return // a late answer to an older probe, maybe from the relay before its restart
	}
	changed := b.epoch != 0 && epoch != b.epoch
	b.epoch, b.epochSeq = epoch, seq
	if changed {
		select {
		case b.restarted <- struct{}{}:
		default: // one is pending already
		}
	}
}

// notifyRestarts calls RelayRestarted for each epoch change, until the session ends.
func (b *BoxBind) notifyRestarts(done chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-b.restarted:
			b.opts.RelayRestarted()
		}
	}
}

func parseEndpoint(s string) (conn.Endpoint, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("wire: endpoint %q: %w", s, err)
	}
	return &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(a.Addr().Unmap(), a.Port())}, nil
}
