// Package calls measures each call's quality passively: it follows the PBX's calls from their SIP and their RTP both ways on the LAN (loss, RFC 3550 jitter, one-way audio, an E-model MOS) and keeps the last day's calls.
package calls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/store"
)

// Options are what a Service needs.
type Options struct {
	Config   *config.Config
	Alerts   *alerts.Store // nil: no alerts
	Line     func() string // the uplink calls use now (wan's active line); nil: unknown
	StateDir string        // ended calls are kept in StateDir/calls.json ("": memory only)
	Log      *slog.Logger
}

// Service captures on the LAN interface and follows the calls.
type Service struct {
	o     Options
	t     *Tracker
	iface string
}

// saveEvery bounds writes of the ended calls (an SD card wears with each).
const saveEvery = 10 * time.Second

// maxFile bounds the saved file read back at start.
const maxFile = 8 << 20

// New makes the service from the config; nil when [voice.calls] is off.
func New(o Options) (*Service, error) {
	c := o.Config
	if !c.Voice.Calls.Enabled {
		return nil, nil
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var pbx []netip.Addr
	for _, a := range []config.Addr{c.PBX.Address, c.PBX.Address6} {
		if a.IsValid() {
			pbx = append(pbx, a.Unmap())
		}
	}
	s := &Service{o: o, iface: c.LAN.Interface, t: NewTracker(Settings{PBX: pbx, SIPPort: uint16(c.PBX.SIPPort),
		MaxCalls: c.Voice.Calls.MaxCalls, OneWayAfter: c.Voice.Calls.OneWayAfter, MOSAlert: c.Voice.Calls.MOSAlert})}
	if err := s.load(); err != nil {
		o.Log.Warn("calls: the last day's calls could not be read: starting empty", "err", err)
	}
	return s, nil
}

// Tracker is the service's call table (tests, the bench).
func (s *Service) Tracker() *Tracker { return s.t }

// Status is the calls now and in the last 24 h.
func (s *Service) Status() Status { return s.t.Status(time.Now()) }

// Run captures and ticks until ctx ends; it saves the ended calls on the way out.
func (s *Service) Run(ctx context.Context) error {
	c := s.o.Config
	prog, err := Filter(s.t.set.PBX, s.t.set.SIPPort, c.PBX.RTPPorts.Lo, c.PBX.RTPPorts.Hi)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 1)
	go func() {
		errs <- capture(ctx, s.iface, prog, s.t, s.t.addDrops)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	saved := len(s.t.Ended(time.Now()))
	lastSave := time.Now()
	defer func() { _ = s.save() }()
	for {
		select {
		case <-ctx.Done():
			<-errs
			return nil
		case err := <-errs:
			return err
		case now := <-tick.C:
			line := ""
			if s.o.Line != nil {
				line = s.o.Line()
			}
			s.apply(s.t.Tick(now, line))
			if n := s.t.endedCount(); n != saved && now.Sub(lastSave) >= saveEvery {
				if err := s.save(); err != nil {
					s.o.Log.Error("calls: save the last day's calls", "err", err)
				}
				saved, lastSave = n, now
			}
		}
	}
}

// apply raises and clears alerts (and logs the raises: one per call at most).
func (s *Service) apply(acts []Action) {
	for _, a := range acts {
		if a.Raise {
			s.o.Log.Warn("calls: " + a.Message)
		}
		if s.o.Alerts == nil {
			continue
		}
		if a.Raise {
			s.o.Alerts.Raise(a.Key, "calls", a.Message)
		} else {
			s.o.Alerts.Clear(a.Key)
		}
	}
}

func (s *Service) file() string {
	if s.o.StateDir == "" {
		return ""
	}
	return filepath.Join(s.o.StateDir, "calls.json")
}

// save writes the last day's ended calls, crash-safe.
func (s *Service) save() error {
	f := s.file()
	if f == "" {
		return nil
	}
	b, err := json.Marshal(s.t.Ended(time.Now()))
	if err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	if err := os.MkdirAll(s.o.StateDir, 0o700); err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	return store.WriteFile(f, b, 0o600)
}

// load reads the saved ended calls back (bounded: a damaged file costs nothing).
func (s *Service) load() error {
	f := s.file()
	if f == "" {
		return nil
	}
	fh, err := os.Open(f)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxFile+1))
	if err != nil {
		return fmt.Errorf("calls: %s: %w", f, err)
	}
	if len(b) > maxFile {
		return fmt.Errorf("calls: %s: larger than %d bytes", f, maxFile)
	}
	var ended []Call
	if err := json.Unmarshal(b, &ended); err != nil {
		return fmt.Errorf("calls: %s: %w", f, err)
	}
	s.t.Restore(ended, time.Now())
	return nil
}

// endedCount is how many ended calls the ring holds (a change means something to save).
func (t *Tracker) endedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ended) + int(t.c.Calls)
}

// addDrops counts packets the kernel dropped on the capture socket.
func (t *Tracker) addDrops(n uint64) {
	t.mu.Lock()
	t.c.CaptureDrops += n
	t.mu.Unlock()
}
