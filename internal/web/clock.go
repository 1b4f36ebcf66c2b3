package web

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/clock"
)

// clockView is /api/clock: the box's clock, for the Clock line of the page.
type clockView struct {
	On bool `json:"on"` // false: the clock part is not running
	clock.State
}

// handleClock serves the Clock line (HTTPS only, like the other panels).
func (s *Server) handleClock(w http.ResponseWriter, r *http.Request) {
	var v clockView
	if s.o.Clock != nil {
		v.State, v.On = s.o.Clock()
	}
	writeJSON(w, http.StatusOK, v)
}

var (
	mClockTrusted  = prometheus.NewDesc("appliance_clock_trusted", "1 once the box's clock is trusted (synced, or not before the last known-good time).", nil, nil)
	mClockOffset   = prometheus.NewDesc("appliance_clock_offset_seconds", "The time servers' clock less the box's, at the last sync.", nil, nil)
	mClockLastSync = prometheus.NewDesc("appliance_clock_last_sync_timestamp_seconds", "When the clock last synced with a time server.", []string{"server"}, nil)
	mClockStratum  = prometheus.NewDesc("appliance_clock_stratum", "The time server's stratum at the last sync (the box serves the LAN at this + 1).", nil, nil)
	clockDescs     = []*prometheus.Desc{mClockTrusted, mClockOffset, mClockLastSync, mClockStratum}
)

func (s *Server) collectClock(g metric) {
	if s.o.Clock == nil {
		return
	}
	st, ok := s.o.Clock()
	if !ok {
		return
	}
	g(mClockTrusted, boolGauge[st.Trusted])
	if st.LastSync.IsZero() {
		return
	}
	g(mClockOffset, st.Offset.Seconds())
	g(mClockLastSync, float64(st.LastSync.UnixMilli())/1000, st.Server)
	g(mClockStratum, float64(st.Stratum))
}
