// Package clock keeps the box's time: NTP over the active uplink, whether the clock can be trusted yet, and SNTP for the LAN.
package clock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/beevik/ntp"

	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/store"
)

// Options say whom to ask and what the clock may do.
type Options struct {
	// Servers are NTP servers ("host" or "host:port"), asked in turn.
	Servers []string
	// Interval is the time between syncs once synced.
	Interval time.Duration
	// Now reads the system clock (time.Now). Tests give one that starts in 1970.
	Now func() time.Time
	// Set steps the system clock. Nil: the clock is never set (set_clock = false, and every
	// test): the box then keeps the servers' offset and Now adds it.
	Set func(time.Time) error
	// StateFile keeps the last time the clock was known good, across power cuts ("": none).
	StateFile string
	// Dial opens UDP to a server ("host:port") through the active uplink.
	Dial func(ctx context.Context, address string) (net.Conn, error)
	Bus  *events.Bus
	Log  *slog.Logger
}

// stepAt is the offset from which the system clock is stepped; a smaller one is only
// tracked (stepping the clock back and forth by milliseconds would only shuffle logs).
const stepAt = 500 * time.Millisecond

// saveEvery is how often the known-good time is saved while the clock is trusted: after a
// power cut the clock must read at least this (less this interval) to be trusted unsynced.
const saveEvery = 10 * time.Minute

// State is what the page and /metrics show.
type State struct {
	Trusted  bool          `json:"trusted"`
	Why      string        `json:"why"`       // why it is (or is not) trusted, in plain words
	Now      time.Time     `json:"now"`       // the box's time, corrected
	Offset   time.Duration `json:"offset_ns"` // the servers' time less the system clock's, at the last sync
	LastSync time.Time     `json:"last_sync,omitzero"`
	Server   string        `json:"server,omitempty"` // the server of the last sync
	Stratum  uint8         `json:"stratum,omitempty"`
	RTT      time.Duration `json:"rtt_ns,omitempty"`
	SetClock bool          `json:"set_clock"`
	Error    string        `json:"error,omitempty"` // the last failed sync, "" after a good one
}

// Clock is the box's time keeper.
type Clock struct {
	o       Options
	trusted chan struct{} // closed once the clock is trusted

	mu        sync.Mutex
	st        State
	corr      time.Duration // added to o.Now: the offset not put into the system clock
	rootDelay time.Duration // the upstream's, plus the round trip to it: for serving
	rootDisp  time.Duration
	refID     uint32
}

// New makes a clock. It is trusted from the start when the state file shows the system
// clock is not before the last time it was known good (a box that restarts, or one with a
// clock battery); a Pi without one starts in 1970 and waits for a server.
func New(o Options) *Clock {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c := &Clock{o: o, trusted: make(chan struct{})}
	c.st = State{SetClock: o.Set != nil, Why: "not synced with a time server yet, and no earlier good time is known"}
	if saved, err := c.saved(); err == nil {
		if now := o.Now(); !now.Before(saved) {
			c.trust(fmt.Sprintf("the clock (%s) is not before the last time it was known good (%s)",
				now.UTC().Format(time.RFC3339), saved.UTC().Format(time.RFC3339)))
		} else {
			c.st.Why = fmt.Sprintf("the clock reads %s, before the last time it was known good (%s): waiting for a time server",
				now.UTC().Format(time.RFC3339), saved.UTC().Format(time.RFC3339))
		}
	}
	return c
}

// trust marks the clock trusted; c.mu is held or c is not shared yet.
func (c *Clock) trust(why string) {
	c.st.Why = why
	if !c.st.Trusted {
		c.st.Trusted = true
		close(c.trusted)
	}
}

// Now is the box's best idea of the time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.o.Now().Add(c.corr)
}

// Trusted says whether the clock may be used for anything that lasts: expiries, ages,
// certificates.
func (c *Clock) Trusted() bool {
	select {
	case <-c.trusted:
		return true
	default:
		return false
	}
}

// WaitTrusted returns once the clock is trusted, or with ctx's error.
func (c *Clock) WaitTrusted(ctx context.Context) error {
	select {
	case <-c.trusted:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// State reads the clock's state.
func (c *Clock) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.Now = c.o.Now().Add(c.corr)
	return st
}

// Run syncs until ctx ends: quickly (2 s, doubling to a minute) until the first sync, then
// every Interval. Failures are in the state, never the end of Run.
func (c *Clock) Run(ctx context.Context) error {
	wait := 2 * time.Second
	lastSave := time.Now()
	for {
		if err := c.Sync(ctx); err != nil {
			c.o.Log.Warn("time sync failed", "err", err)
		}
		next := c.o.Interval
		if c.State().LastSync.IsZero() {
			next, wait = wait, min(2*wait, time.Minute)
		}
		if c.Trusted() && time.Since(lastSave) >= saveEvery {
			c.save()
			lastSave = time.Now()
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			if c.Trusted() {
				c.save()
			}
			return nil
		case <-t.C:
		}
	}
}

// Sync asks the servers in turn and takes the first good answer.
func (c *Clock) Sync(ctx context.Context) error {
	var errs []error
	for _, s := range c.o.Servers {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r, peer, err := c.query(ctx, s)
		if err == nil {
			c.took(s, peer, r)
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s, err))
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no time server configured"))
	}
	err := errors.Join(errs...)
	c.mu.Lock()
	c.st.Error = strings.ReplaceAll(err.Error(), "\n", "; ")
	c.mu.Unlock()
	return err
}

// query asks one server; peer is the address it reached (a name's).
func (c *Clock) query(ctx context.Context, server string) (r *ntp.Response, peer netip.Addr, err error) {
	addr := server
	if _, _, err := net.SplitHostPort(server); err != nil {
		addr = net.JoinHostPort(server, "123")
	}
	dial := c.o.Dial
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "udp", a) }
	}
	stop := func() bool { return false }
	opt := ntp.QueryOptions{Timeout: 3 * time.Second, Dialer: func(_, remote string) (net.Conn, error) {
		conn, err := dial(ctx, remote)
		if err == nil {
			if ap, perr := netip.ParseAddrPort(conn.RemoteAddr().String()); perr == nil {
				peer = ap.Addr().Unmap()
			}
			// The library takes no context: closing the socket ends a query the daemon's
			// stop would otherwise wait out.
			stop = context.AfterFunc(ctx, func() { conn.Close() })
		}
		return conn, err
	}}
	r, err = ntp.QueryWithOptions(addr, opt)
	stop()
	if err != nil {
		return nil, peer, err
	}
	// Refuses kiss-o'-death, unsynchronised servers (stratum 16) and absurd distances.
	if err := r.Validate(); err != nil {
		return nil, peer, err
	}
	return r, peer, nil
}

// took applies a good answer. The library measures against the process's clock
// (time.Now); the offset is taken against o.Now, which tests replace.
func (c *Clock) took(server string, peer netip.Addr, r *ntp.Response) {
	c.mu.Lock()
	truth := time.Now().Add(r.ClockOffset)
	before := c.o.Now()
	offset := truth.Sub(before)
	first := c.st.LastSync.IsZero()
	wasTrusted := c.st.Trusted
	c.corr = offset
	stepped := false
	var setErr error
	if c.o.Set != nil && (offset >= stepAt || offset <= -stepAt) {
		if setErr = c.o.Set(before.Add(offset)); setErr == nil {
			c.corr, stepped = 0, true
		}
	}
	c.st.Offset, c.st.LastSync, c.st.Server, c.st.Stratum, c.st.RTT, c.st.Error = offset, truth, server, r.Stratum, r.RTT, ""
	if setErr != nil {
		c.st.Error = "setting the system clock failed (the box keeps the offset itself): " + setErr.Error()
	}
	c.rootDelay, c.rootDisp, c.refID = r.RootDelay+r.RTT, r.RootDispersion+r.RTT/2, refIDOf(peer)
	c.mu.Unlock()
	if first || stepped {
		c.saveTime(truth) // before anyone waiting for trust reads it
	}
	c.mu.Lock()
	c.trust("synced with " + server)
	c.mu.Unlock()
	msg := fmt.Sprintf("clock synced with %s (stratum %d): offset %s", server, r.Stratum, offset.Round(time.Millisecond))
	if stepped {
		msg += fmt.Sprintf("; system clock stepped from %s to %s", before.UTC().Format(time.RFC3339), truth.UTC().Format(time.RFC3339))
	}
	if first || stepped || !wasTrusted {
		c.o.Log.Info(msg)
		if c.o.Bus != nil {
			c.o.Bus.Publish(events.Event{Kind: "clock.synced", Source: "clock", Message: msg, Fields: map[string]string{
				"server": server, "offset": offset.String(), "stepped": fmt.Sprint(stepped), "trusted_before": fmt.Sprint(wasTrusted)}})
		}
	}
}

// saved reads the last known-good time.
func (c *Clock) saved() (time.Time, error) {
	if c.o.StateFile == "" {
		return time.Time{}, os.ErrNotExist
	}
	b, err := os.ReadFile(c.o.StateFile)
	if err != nil {
		return time.Time{}, err
	}
	return time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
}

// save keeps the box's time as the last known good one; only a trusted time is saved, so a
// 1970 clock never overwrites it.
func (c *Clock) save() {
	if c.Trusted() {
		c.saveTime(c.Now())
	}
}

func (c *Clock) saveTime(t time.Time) {
	if c.o.StateFile == "" {
		return
	}
	if err := store.WriteFile(c.o.StateFile, []byte(t.UTC().Format(time.RFC3339Nano)+"\n"), 0o600); err != nil {
		c.o.Log.Warn("saving the known-good time failed", "err", err)
	}
}
