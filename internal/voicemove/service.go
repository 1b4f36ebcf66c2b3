package voicemove

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// AlertKey is the alert raised while voice is moved off a flooded line.
const AlertKey = "voice.moved"

// Path is the control API's route of the status (GET: Status).
const Path = "/voice/move"

// Relay is the relay's box side as the move needs it (package relay/box's Part, through the
// daemon).
type Relay interface {
	// SetVoiceLine makes the tunnel leave through uplink i (-1: wan's active line again).
	SetVoiceLine(i int)
	// Tunnelled says the relay carries the office's voice now (not direct): its calls move
	// with the tunnel, without a conntrack flush.
	Tunnelled() bool
}

// Options are what the part reads; the functions are called at each look.
type Options struct {
	Config func() *config.Config
	WAN    func() (wan.Status, bool) // false: wan is off
	// Calls are the active calls on the uplink named (package calls); nil or false: no call
	// is measured, and the line's probes stand for them.
	Calls func(line string) ([]CallSample, bool)
	// Relay is the relay part in force, or nil.
	Relay  func() Relay
	Alerts *alerts.Store
	Bus    *events.Bus
	Log    *slog.Logger
	Every  time.Duration // between looks (default 500ms)
}

// Status is what the control API and /metrics show.
type Status struct {
	Moved bool   `json:"moved"`
	From  string `json:"from,omitempty"` // the line voice left (an uplink's name)
	To    string `json:"to,omitempty"`
	// Since is when voice moved (or came back, with Moved false).
	Since time.Time `json:"since,omitzero"`
	Why   string    `json:"why,omitempty"`
	// Relay says the relay's tunnel was moved (voice through the relay); otherwise voice
	// goes direct through the modem, its flows removed to re-NAT (FlowsMoved).
	Relay      bool `json:"relay,omitempty"`
	FlowsMoved uint `json:"flows_moved,omitempty"`
	// The active line as last seen: what the firewall dropped of what came in on it, its
	// download rate (what it received), and its calls' quality.
	Line      string  `json:"line"`
	Dropped   float64 `json:"dropped_bps"`
	Reference float64 `json:"reference_bps"`
	Quality   Quality `json:"quality"`
	Error     string  `json:"error,omitempty"`
}

// Service watches the active line and moves voice.
type Service struct {
	o     Options
	det   *Detector
	win   window
	calls callQuality
	probe probeQuality
	line  string // the active line's interface watched
	// sweep is when the voice flows are removed once more after a move or a return (a
	// packet routed just before it may confirm its entry after the first dump); looks
	// counts the looks, for the reconcile's pace.
	sweep time.Time
	looks int
	// Until settle, the voice flows that came in on the line voice just left (index left)
	// are removed at each look: a trunk's packets still on their way to that line's address
	// must not make the flows again before the PBX's own packets do, through the new line
	// (to whose address a trunk with symmetric RTP then turns).
	settle time.Time
	left   int
	// movedTo is the index of the line voice was moved to.
	movedTo int

	mu sync.Mutex
	st Status
}

// New makes the part.
func New(o Options) *Service {
	if o.Every <= 0 {
		o.Every = 500 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{o: o, det: NewDetector(SettingsFrom(o.Config().Voice.Flood)), win: window{span: 2 * time.Second}}
}

// Status is the move now.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Reload takes new thresholds (read at each look); switching the move off brings voice back
// at the next look.
func (s *Service) Reload(*config.Config) error { return nil }

// Run looks every Every until ctx ends, then puts voice back on the active line.
func (s *Service) Run(ctx context.Context) error {
	r := newReader()
	defer r.close()
	// A rule left by a run that crashed: voice starts on the active line.
	if err := removeRules(); err != nil {
		s.o.Log.Warn("voicemove: start", "err", err)
	}
	defer func() {
		if s.det.Moved() {
			s.back("the appliance stops", false)
		}
		if err := removeRules(); err != nil {
			s.o.Log.Warn("voicemove: stop", "err", err)
		}
	}()
	tick := time.NewTicker(s.o.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			s.look(r, now)
		}
	}
}

// line is one uplink as the move sees it.
type line struct {
	index int
	cfg   *config.Uplink
	st    wan.UplinkStatus
}

// look reads the active line and acts.
func (s *Service) look(r *reader, now time.Time) {
	c := s.o.Config()
	s.det.Set(SettingsFrom(c.Voice.Flood))
	st, ok := s.o.WAN()
	if !ok {
		return
	}
	var act, backup *line
	var ifaces []string
	for i, u := range c.Uplink.All() {
		ifaces = append(ifaces, u.Interface)
		l := &line{index: i, cfg: u}
		for _, us := range st.Uplinks {
			if string(us.Role) == u.Role {
				l.st = us
			}
		}
		if wan.Role(u.Role) == st.Active {
			act = l
		}
		if wan.Role(u.Role) == wan.Backup {
			backup = l
		}
	}
	cs, err := r.read(ifaces, now)
	if err != nil {
		s.setError(err)
		return
	}
	s.win.add(cs)
	if act == nil {
		return
	}
	// Voice can only leave the active line for a working modem, while the move is on.
	why := ""
	switch {
	case !c.Voice.Flood.Move:
		why = "the voice move was switched off"
	case backup == nil:
		why = "there is no backup uplink"
	case act == backup:
		why = "the office's traffic moved to " + backup.cfg.Name + " itself"
	case backup.st.State != wan.Up && backup.st.State != wan.Degraded:
		why = backup.cfg.Name + " is " + string(backup.st.State)
	}
	if act.cfg.Interface != s.line {
		s.line = act.cfg.Interface
		s.probe.reset()
	}
	x := s.sample(act, now)
	s.mu.Lock()
	s.st.Line, s.st.Dropped, s.st.Reference, s.st.Quality = act.cfg.Name, x.Dropped, x.Reference, x.Quality
	s.mu.Unlock()
	if why != "" {
		if s.det.Moved() {
			s.back(why, false)
		}
		s.det.Reset(why)
		return
	}
	moved, changed := s.det.Step(x)
	s.looks++
	switch {
	case changed && moved:
		s.move(act, backup, s.det.Why())
	case changed:
		s.back(s.det.Why(), true)
	case moved && s.looks%reconcileLooks == 0:
		s.reconcile(backup)
	}
	if r := s.relay(); r != nil && r.Tunnelled() {
		return // the calls are in the tunnel: their flows never move
	}
	if !s.sweep.IsZero() && !now.Before(s.sweep) {
		s.sweep = time.Time{}
		if _, err := flushVoice(newVoiceFlows(c)); err != nil {
			s.setError(err)
		}
	}
	if now.Before(s.settle) {
		v := newVoiceFlows(c)
		v.mark = netcfg.ReplyMark(s.left)
		if _, err := flushVoice(v); err != nil {
			s.setError(err)
		}
	}
}

// settleFor is how long after a move or a return the flows that came in on the line voice
// left are removed.
const settleFor = 5 * time.Second

// reconcileLooks is how often (in looks) the rule is checked while voice is moved.
const reconcileLooks = 4

// resweep is how long after a move the voice flows are removed once more.
const resweep = 300 * time.Millisecond

// sample is the active line's figures now.
func (s *Service) sample(act *line, now time.Time) Sample {
	x := Sample{At: now}
	// The reference is what the line received: [uplink.*] has no download rate (the shaper
	// shapes the upload only); a flooded line receives at its rate.
	dropped, rx, ok := s.win.rates()
	if ok {
		x.Dropped = droppedOn(act.cfg.Interface, dropped, rx)
		x.Reference = rx[act.cfg.Interface]
	}
	var calls []CallSample
	if s.o.Calls != nil {
		calls, _ = s.o.Calls(act.cfg.Name)
	}
	x.Quality = s.calls.update(calls, now)
	// The probes of the line always advance their calm round trip; they speak for the calls
	// while no call's media is measured.
	pq := s.probe.update(act.st)
	if !x.Quality.Known {
		x.Quality = pq
	}
	return x
}

func (s *Service) setError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg := err.Error(); msg != s.st.Error {
		s.o.Log.Warn("voicemove", "err", msg)
		s.st.Error = msg
	}
}

func (s *Service) clearError() {
	s.mu.Lock()
	s.st.Error = ""
	s.mu.Unlock()
}

// relay is the relay part in force, or nil.
func (s *Service) relay() Relay {
	if s.o.Relay == nil {
		return nil
	}
	return s.o.Relay()
}

// move sends voice to the backup: the relay's tunnel through it, and direct voice by the ip
// rule into its routing table, its flows removed so that they are masqueraded anew.
func (s *Service) move(from, to *line, why string) {
	now := time.Now()
	tunnelled, n, err := s.steer(to.index, func() error { return setRule(wan.ReplyTable(to.index)) })
	if err != nil {
		s.setError(err)
	} else {
		s.clearError()
	}
	s.sweep, s.settle, s.left = now.Add(resweep), now.Add(settleFor), from.index
	how := "direct voice through it"
	if tunnelled {
		how = "the relay's tunnel through it"
	}
	msg := fmt.Sprintf("voice moved from %s to %s (%s): %s", from.cfg.Name, to.cfg.Name, how, why)
	s.movedTo = to.index
	s.mu.Lock()
	s.st.Moved, s.st.From, s.st.To, s.st.Since, s.st.Why, s.st.Relay, s.st.FlowsMoved = true, from.cfg.Name, to.cfg.Name, now, why, tunnelled, n
	s.mu.Unlock()
	if s.o.Alerts != nil {
		s.o.Alerts.Raise(AlertKey, "voicemove", msg+"; the rest of the office stays on "+from.cfg.Name)
	}
	s.publish(events.Event{Time: now, Kind: "voice.moved", Severity: events.Warn, Message: msg,
		Fields: map[string]string{"from": from.cfg.Name, "to": to.cfg.Name, "relay": fmt.Sprint(tunnelled), "flows_removed": fmt.Sprint(n)}})
}

// back puts voice on the active line again; settle when that line is the one voice left
// (the flood ended), not when the office itself moved or the modem failed.
func (s *Service) back(why string, settle bool) {
	now := time.Now()
	_, n, err := s.steer(-1, removeRules)
	if err != nil {
		s.setError(err)
	}
	s.sweep = now.Add(resweep)
	if settle {
		s.settle, s.left = now.Add(settleFor), s.movedTo
	}
	s.mu.Lock()
	from, to := s.st.From, s.st.To
	s.st.Moved, s.st.Since, s.st.Why, s.st.FlowsMoved = false, now, why, n
	s.mu.Unlock()
	if s.o.Alerts != nil {
		s.o.Alerts.Clear(AlertKey)
	}
	s.publish(events.Event{Time: now, Kind: "voice.returned", Severity: events.Info,
		Message: fmt.Sprintf("voice back from %s on the active line: %s", to, why),
		Fields:  map[string]string{"from": to, "to": from, "flows_removed": fmt.Sprint(n)}})
}

// steer points the relay's tunnel at line index (-1: the active line), changes the ip rule
// for direct voice with rule, and, unless voice goes through the tunnel, removes the voice
// flows so that they are masqueraded anew. It returns the first error.
func (s *Service) steer(index int, rule func() error) (tunnelled bool, flushed uint, err error) {
	if r := s.relay(); r != nil {
		r.SetVoiceLine(index)
		tunnelled = r.Tunnelled()
	}
	err = rule()
	if !tunnelled {
		var ferr error
		flushed, ferr = flushVoice(newVoiceFlows(s.o.Config()))
		if err == nil {
			err = ferr
		}
	}
	return tunnelled, flushed, err
}

// reconcile repairs the rule while voice is moved (someone removed it, or the first try
// failed); the relay is told again, since it may have been restarted.
func (s *Service) reconcile(to *line) {
	if r := s.relay(); r != nil {
		r.SetVoiceLine(to.index)
	}
	if hasRule(wan.ReplyTable(to.index)) {
		return
	}
	if err := setRule(wan.ReplyTable(to.index)); err != nil {
		s.setError(err)
		return
	}
	s.clearError()
}

func (s *Service) publish(e events.Event) {
	e.Source = "voicemove"
	s.o.Log.Info("voicemove event", "kind", e.Kind, "msg", e.Message)
	if s.o.Bus != nil {
		s.o.Bus.Publish(e)
	}
}
