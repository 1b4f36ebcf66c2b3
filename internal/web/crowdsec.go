package web

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/crowdsec"
)

var (
	mCSPull       = prometheus.NewDesc("appliance_crowdsec_pull_ok", "1 if the last pull of the CrowdSec LAPI's decisions succeeded.", nil, nil)
	mCSDecisions  = prometheus.NewDesc("appliance_crowdsec_decisions", "Addresses and networks blocked for the CrowdSec LAPI.", nil, nil)
	mCSRefused    = prometheus.NewDesc("appliance_crowdsec_refused", "CrowdSec decisions not applied (protected, too wide).", nil, nil)
	mCSQueued     = prometheus.NewDesc("appliance_crowdsec_alerts_queued", "Alerts waiting to be sent to the CrowdSec LAPI.", nil, nil)
	mCSPushed     = prometheus.NewDesc("appliance_crowdsec_alerts_pushed_total", "Alerts sent to the CrowdSec LAPI since start.", nil, nil)
	crowdSecDescs = []*prometheus.Desc{mCSPull, mCSDecisions, mCSRefused, mCSQueued, mCSPushed}
)

// collectCrowdSec sends the fleet-sharing part's figures, when it runs.
func (s *Server) collectCrowdSec(g, k metric) {
	if s.o.CrowdSec == nil {
		return
	}
	st, ok := s.o.CrowdSec()
	if !ok {
		return
	}
	if st.Pulling {
		g(mCSPull, boolGauge[st.PullError == "" && !st.LastPull.IsZero()])
		g(mCSDecisions, float64(st.Decisions))
		g(mCSRefused, float64(len(st.Refused)))
	}
	if st.Pushing {
		g(mCSQueued, float64(st.Queued))
		k(mCSPushed, float64(st.Pushed))
	}
}

// crowdSecView is the fleet-sharing card: off, or the part's state.
type crowdSecView struct {
	On bool `json:"on"`
	crowdsec.Status
}

// handleCrowdSec answers GET /api/crowdsec (logged in: it names the fleet's server).
func (s *Server) handleCrowdSec(w http.ResponseWriter, _ *http.Request) {
	var v crowdSecView
	if s.o.CrowdSec != nil {
		v.Status, v.On = s.o.CrowdSec()
	}
	writeJSON(w, http.StatusOK, v)
}
