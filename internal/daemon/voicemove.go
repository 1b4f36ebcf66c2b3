package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/kernelfeat"
	"github.com/officeedge/appliance/internal/relay/box"
	"github.com/officeedge/appliance/internal/voicemove"
	"github.com/officeedge/appliance/wan"
)

// voiceMoveSpec is the part that moves voice off a flooded line ([voice.flood], issue 23): it
// needs wan (the lines, their routing tables) and policy routing in the kernel.
func voiceMoveSpec() partSpec {
	return partSpec{name: "voicemove", make: func(a *App) (runner, error) { return orNil(newVoiceMovePart(a)) },
		startKey: func(c *config.Config) string { return fmt.Sprint(c.Voice.Flood.Move) }}
}

type voiceMovePart struct{ s *voicemove.Service }

// newVoiceMovePart makes the part, or nil when the move is off or cannot work here.
func newVoiceMovePart(a *App) (*voiceMovePart, error) {
	a.VoiceMove.Store(nil)
	if !a.Config().Voice.Flood.Move || a.WAN == nil {
		return nil, nil
	}
	if !kernelfeat.Has(a.Kernel, "policy routing") || !kernelfeat.Has(a.Kernel, "ct mark") {
		// wan keeps no routing table per uplink without them: there is nowhere to send voice.
		a.Log.Warn("voicemove: off: the kernel has no policy routing, so voice cannot be moved off a flooded line")
		return nil, nil
	}
	s := voicemove.New(voicemove.Options{
		Config: a.Config,
		WAN:    func() (wan.Status, bool) { return wanStatus(a) },
		Calls:  func(string) ([]voicemove.CallSample, bool) { return activeCalls(a) },
		Relay: func() voicemove.Relay {
			if p := a.Relay.Load(); p != nil {
				return relayLine{p}
			}
			return nil
		},
		Alerts: a.Alerts, Bus: a.Bus, Log: a.Log.With("part", "voicemove"),
	})
	a.VoiceMove.Store(s)
	return &voiceMovePart{s: s}, nil
}

func (p *voiceMovePart) Run(ctx context.Context) error { return p.s.Run(ctx) }

// Reload: the thresholds are read at each look.
func (p *voiceMovePart) Reload(c *config.Config) error { return p.s.Reload(c) }

// activeCalls are the calls now with the media towards the PBX (what a flood on the
// downlink hurts), from the calls part; false when it is off. The office's calls all use
// the active line (or the relay's tunnel over it) while voice is not moved, which is when
// the move reads them.
func activeCalls(a *App) ([]voicemove.CallSample, bool) {
	s := a.Calls.Load()
	if s == nil {
		return nil, false
	}
	var out []voicemove.CallSample
	for _, c := range s.Status().Active {
		if c.Hold || c.Answered.IsZero() {
			continue
		}
		f := c.ToPBX
		out = append(out, voicemove.CallSample{ID: c.ID, Expected: f.Expected, Lost: f.Lost,
			Jitter: time.Duration(f.JitterMs * float64(time.Millisecond))})
	}
	return out, true
}

// relayLine is the relay part as the move drives it.
type relayLine struct{ p *box.Part }

func (r relayLine) SetVoiceLine(i int) { r.p.SetVoiceLine(i) }

// Tunnelled: the relay carries voice now, not direct.
func (r relayLine) Tunnelled() bool { return r.p.Status().Using == "relay" }

// voiceMoveStatus is the move in force; false when it is off.
func voiceMoveStatus(a *App) (voicemove.Status, bool) {
	if s := a.VoiceMove.Load(); s != nil {
		return s.Status(), true
	}
	return voicemove.Status{}, false
}

// voiceMoveRoutes is the control API's route of the move (GET voicemove.Path).
func (a *App) voiceMoveRoutes() {
	a.Control.HandleFunc("GET "+voicemove.Path, func(w http.ResponseWriter, r *http.Request) {
		st, ok := voiceMoveStatus(a)
		if !ok {
			http.Error(w, "the voice move is off ([voice.flood] move = false, no backup uplink, or no policy routing)", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, st)
	})
}

// voiceMoveCollector is appliance_voice_moved{line} for /metrics.
func voiceMoveCollector(a *App) prometheus.Collector {
	return voicemove.Collector(func() (voicemove.Status, bool) { return voiceMoveStatus(a) }, func() []string {
		var out []string
		for _, u := range a.Config().Uplink.All() {
			out = append(out, u.Name)
		}
		return out
	})
}
