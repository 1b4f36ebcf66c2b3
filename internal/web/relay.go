package web

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/relay/box"
)

// Relay is the voice relay's box side as the page reads it (box.Part).
type Relay interface {
	Status() box.Status
}

var (
	mRelayUsing     = prometheus.NewDesc("appliance_relay_using", "1 for where the office's voice goes now: through the relay or direct (the relay answers on no line).", []string{"path"}, nil)
	mRelayReachable = prometheus.NewDesc("appliance_relay_line_reachable", "1 while the relay answers the line's probes.", []string{"line"}, nil)
	mRelayCurrent   = prometheus.NewDesc("appliance_relay_line_current", "1 for the line carrying the tunnel.", []string{"line"}, nil)
	mRelayRTT       = prometheus.NewDesc("appliance_relay_line_rtt_seconds", "Round trip of the line's latest answered probe to the relay.", []string{"line"}, nil)
	mRelayLoss      = prometheus.NewDesc("appliance_relay_line_loss_ratio", "Probes to the relay lost over the line (the last 20).", []string{"line"}, nil)
	mRelayOut       = prometheus.NewDesc("appliance_relay_line_sent_bytes_total", "Tunnel bytes sent over the line (duplicates included).", []string{"line"}, nil)
	mRelayIn        = prometheus.NewDesc("appliance_relay_line_received_bytes_total", "Tunnel bytes received over the line.", []string{"line"}, nil)
	mRelayDup       = prometheus.NewDesc("appliance_relay_line_duplicate_bytes_total", "Duplicate copies of tunnel packets sent over the line ([relay] duplicate).", []string{"line"}, nil)
	mRelayDupMin    = prometheus.NewDesc("appliance_relay_duplicate_bytes_per_call_minute", "Duplicate bytes sent per minute of voice through the tunnel (0 until a minute was seen).", nil, nil)
	mRelayHandshake = prometheus.NewDesc("appliance_relay_last_handshake_seconds", "Seconds since the tunnel's last WireGuard handshake with the relay (absent before the first).", nil, nil)
	relayDescs      = []*prometheus.Desc{mRelayUsing, mRelayReachable, mRelayCurrent, mRelayRTT, mRelayLoss, mRelayOut, mRelayIn, mRelayDup, mRelayDupMin, mRelayHandshake}
)

// relay is the relay part in force, or nil when it is off.
func (s *Server) relay() Relay {
	if s.o.Relay == nil {
		return nil
	}
	r, ok := s.o.Relay()
	if !ok {
		return nil
	}
	return r
}

func (s *Server) collectRelay(g, k metric) {
	r := s.relay()
	if r == nil {
		return
	}
	st := r.Status()
	for _, path := range []string{box.UsingRelay, box.UsingDirect} {
		g(mRelayUsing, boolGauge[st.Using == path], path)
	}
	for _, l := range st.Lines {
		g(mRelayReachable, boolGauge[l.Reachable], l.Name)
		g(mRelayCurrent, boolGauge[l.Current], l.Name)
		if l.ProbesAnswered > 0 {
			g(mRelayRTT, l.RTT.Seconds(), l.Name)
		}
		g(mRelayLoss, l.Loss, l.Name)
		k(mRelayOut, float64(l.BytesOut), l.Name)
		k(mRelayIn, float64(l.BytesIn), l.Name)
		k(mRelayDup, float64(l.DuplicateBytesOut), l.Name)
	}
	g(mRelayDupMin, st.DuplicateBytesPerCallMinute)
	if !st.LastHandshake.IsZero() {
		g(mRelayHandshake, s.o.Now().Sub(st.LastHandshake).Seconds())
	}
}

// handleRelay is the relay card: where voice goes, the tunnel per line, the address the
// trunk provider must allow.
func (s *Server) handleRelay(w http.ResponseWriter, r *http.Request) {
	rl := s.relay()
	if rl == nil {
		writeJSON(w, http.StatusOK, map[string]any{"enabled": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enabled": true, "relay": rl.Status()})
}
