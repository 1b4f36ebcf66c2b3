package crowdsec

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// Alert keys the service raises.
const (
	KeyPull    = "crowdsec.pull"    // decisions can't be pulled: the last good ones stay
	KeyPush    = "crowdsec.push"    // alerts can't be sent: they wait on disk
	KeyRefused = "crowdsec.refused" // a decision names something the box never blocks
)

// Status is what the page, /metrics and the CLI show.
type Status struct {
	URL       string    `json:"url"`
	Pulling   bool      `json:"pulling"`
	Pushing   bool      `json:"pushing"`
	LastPull  time.Time `json:"last_pull,omitzero"` // last successful pull
	PullError string    `json:"pull_error,omitempty"`
	Decisions int       `json:"decisions"` // prefixes blocked for the LAPI
	Refused   []string  `json:"refused,omitempty"`
	Ignored   int       `json:"ignored"` // decisions not for the kernel (captcha, a country...)
	Queued    int       `json:"queued"`  // alerts waiting to be sent
	Pushed    int       `json:"pushed"`  // alerts sent since start
	Dropped   int       `json:"dropped"` // alerts lost: the queue was full
	// Local counts sipguard's blocks not shared since start: their sources never proved
	// they receive what is sent to their address (a forged UDP source), docs/fleet.md.
	Local     int       `json:"local"`
	LastPush  time.Time `json:"last_push,omitzero"`
	PushError string    `json:"push_error,omitempty"`
}

// Options are the service's parts.
type Options struct {
	Config   config.CrowdSec
	Site     string
	Owner    Owner
	StateDir string // the alert queue lives here; "" keeps it in memory
	Alerts   *alerts.Store
	Bus      *events.Bus
	Log      *slog.Logger
	// Shared says whether sipguard's block of a prefix may go to the fleet, and why (its
	// source proved its address: sipguard.Guard.Shared); nil shares nothing.
	Shared Shared
}

// Shared says whether a sipguard block is the fleet's to know, and the proof that makes it so.
type Shared func(netip.Prefix) (why string, ok bool)

// Service pulls decisions and pushes alerts until its context ends.
type Service struct {
	o Options
	c *Client
	b *bouncer
	m *machine

	mu sync.Mutex
	st Status
}

// New makes the service; it fails on unreadable credentials or TLS material.
func New(o Options) (*Service, error) {
	c, err := NewClient(o.Config)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Service{o: o, c: c, st: Status{URL: o.Config.URL, Pulling: c.Bouncer(), Pushing: c.Machine()}}
	if c.Bouncer() {
		s.b = newBouncer(o.Owner)
	}
	if c.Machine() {
		path := ""
		if o.StateDir != "" {
			path = filepath.Join(o.StateDir, "crowdsec", "alert-queue.json")
		}
		if s.m, err = newMachine(o.Site, path, o.Shared); err != nil {
			o.Log.Warn("crowdsec: alert queue", "err", err)
		}
		s.st.Queued = len(s.m.queue)
	}
	return s, nil
}

// Status is a copy of the service's state.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Refused = append([]string(nil), st.Refused...)
	return st
}

// Run pulls and pushes until ctx ends (nil): the LAPI's failures are alerts, never an end.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.b != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.pullLoop(ctx) }()
	}
	if s.m != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.pushLoop(ctx) }()
	}
	wg.Wait()
	return nil
}

func (s *Service) pullLoop(ctx context.Context) {
	startup := true
	t := time.NewTicker(s.o.Config.Interval)
	defer t.Stop()
	for {
		stream, err := s.c.Pull(ctx, startup)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = s.b.apply(stream, startup, time.Now())
		}
		s.pulled(err, startup)
		// After any failure the next pull is a whole one: a change the LAPI thinks we
		// have (it answered, the answer was lost) must not be missed.
		startup = err != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) pulled(err error, startup bool) {
	s.mu.Lock()
	was := s.st.PullError
	if err != nil {
		s.st.PullError = err.Error()
	} else {
		s.st.PullError, s.st.LastPull = "", time.Now()
	}
	s.st.Decisions, s.st.Ignored, s.st.Refused = s.b.inForce(), s.b.ignored, s.b.refusedList()
	refused := s.st.Refused
	s.mu.Unlock()
	switch {
	case err != nil:
		s.raise(KeyPull, fmt.Sprintf("CrowdSec decisions can't be pulled from %s; the last good ones stay in force: %v", s.o.Config.URL, err))
		if was == "" {
			s.o.Log.Warn("crowdsec: pull", "err", err)
		}
	case was != "" || startup:
		s.clear(KeyPull)
		if was != "" {
			s.event(events.Info, "crowdsec.pull.ok", "CrowdSec decisions pulled again from "+s.o.Config.URL)
		}
	}
	if len(refused) > 0 {
		s.raise(KeyRefused, fmt.Sprintf("%d CrowdSec decision(s) not applied: %s", len(refused), refused[0]))
	} else if err == nil {
		s.clear(KeyRefused)
	}
}

// pushLoop sends the queue whenever the owner shows a new sipguard verdict, and retries with
// backoff while the LAPI is away.
func (s *Service) pushLoop(ctx context.Context) {
	wake, stop := s.o.Owner.Watch()
	defer stop()
	var backoff time.Duration
	var retry <-chan time.Time // set while waiting out a failure
	for {
		s.m.observe(s.o.Owner.State(), time.Now())
		if len(s.m.queue) > 0 && retry == nil {
			if err := s.pushOnce(ctx); err != nil {
				backoff = min(max(2*backoff, time.Second), 30*time.Second)
				retry = time.After(backoff)
			} else {
				backoff = 0
			}
		}
		s.mu.Lock()
		s.st.Queued, s.st.Dropped, s.st.Local = len(s.m.queue), s.m.dropped, s.m.local
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-retry:
			retry = nil
		}
	}
}

// pushOnce sends the queue in batches; the first failure stops it (the queue keeps the rest).
func (s *Service) pushOnce(ctx context.Context) error {
	for len(s.m.queue) > 0 {
		n := min(len(s.m.queue), 100)
		err := s.c.Push(ctx, s.m.queue[:n])
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.mu.Lock()
		if err != nil {
			was := s.st.PushError
			s.st.PushError = err.Error()
			s.mu.Unlock()
			s.raise(KeyPush, fmt.Sprintf("%d alert(s) for the CrowdSec fleet wait on disk: %v", len(s.m.queue), err))
			if was == "" {
				s.o.Log.Warn("crowdsec: push", "err", err)
			}
			return err
		}
		s.st.PushError, s.st.LastPush = "", time.Now()
		s.st.Pushed += n
		s.mu.Unlock()
		s.m.sent(n)
		s.clear(KeyPush)
	}
	return nil
}

func (s *Service) raise(key, msg string) {
	if s.o.Alerts != nil {
		s.o.Alerts.Raise(key, "crowdsec", msg)
	}
}

func (s *Service) clear(key string) {
	if s.o.Alerts != nil {
		s.o.Alerts.Clear(key)
	}
}

func (s *Service) event(sev events.Severity, kind, msg string) {
	if s.o.Bus != nil {
		s.o.Bus.Publish(events.Event{Severity: sev, Kind: kind, Source: "crowdsec", Message: msg})
	}
}
