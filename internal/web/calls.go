package web

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/calls"
)

var (
	mCallsActive  = prometheus.NewDesc("appliance_calls_active", "Calls of the PBX going on now (answered, followed by their SIP).", nil, nil)
	mCallLoss     = prometheus.NewDesc("appliance_call_loss_ratio", "RTP packet loss of an active call so far (RFC 3550 A.3), by direction (to_pbx, from_pbx).", []string{"call", "extension", "direction"}, nil)
	mCallJitter   = prometheus.NewDesc("appliance_call_jitter_ms", "RTP interarrival jitter of an active call (RFC 3550 A.8), in ms, by direction.", []string{"call", "extension", "direction"}, nil)
	mCallMOS      = prometheus.NewDesc("appliance_call_mos", "Estimated MOS (simplified E-model, ITU-T G.107) of an active call so far, by direction.", []string{"call", "extension", "direction"}, nil)
	mCallsTotal   = prometheus.NewDesc("appliance_calls_total", "Answered calls followed since the daemon started.", nil, nil)
	mCallsOneWay  = prometheus.NewDesc("appliance_calls_one_way_total", "Calls that had one-way audio since the daemon started.", nil, nil)
	mCallsPoor    = prometheus.NewDesc("appliance_calls_poor_total", "Calls whose estimated MOS fell below the alert threshold since the daemon started.", nil, nil)
	mCallsUntrack = prometheus.NewDesc("appliance_calls_untracked_total", "INVITEs not followed because the call table was full ([voice.calls] max_calls).", nil, nil)
	callsDescs    = []*prometheus.Desc{mCallsActive, mCallLoss, mCallJitter, mCallMOS, mCallsTotal, mCallsOneWay, mCallsPoor, mCallsUntrack}
)

// calls is the call-quality part's status; false when it is off.
func (s *Server) calls() (calls.Status, bool) {
	if s.o.Calls == nil {
		return calls.Status{}, false
	}
	return s.o.Calls()
}

func (s *Server) collectCalls(g, k metric) {
	st, ok := s.calls()
	if !ok {
		return
	}
	g(mCallsActive, float64(len(st.Active)))
	for _, c := range st.Active {
		for _, d := range []struct {
			name string
			f    calls.Flow
		}{{calls.DirIn, c.ToPBX}, {calls.DirOut, c.FromPBX}} {
			if d.f.Packets == 0 {
				continue
			}
			g(mCallLoss, d.f.LossPct/100, c.ID, c.Extension, d.name)
			g(mCallJitter, d.f.JitterMs, c.ID, c.Extension, d.name)
			g(mCallMOS, d.f.MOS, c.ID, c.Extension, d.name)
		}
	}
	k(mCallsTotal, float64(st.Counters.Calls))
	k(mCallsOneWay, float64(st.Counters.OneWay))
	k(mCallsPoor, float64(st.Counters.Poor))
	k(mCallsUntrack, float64(st.Counters.Untracked))
}

// handleCalls is the calls card: the calls now with each direction's loss, jitter and MOS,
// and the last 24 h with each call's worst minute. Numbers called are personal data: the
// card is behind login.
func (s *Server) handleCalls(w http.ResponseWriter, r *http.Request) {
	st, ok := s.calls()
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{"enabled": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enabled": true, "calls": st})
}
