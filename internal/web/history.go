package web

import (
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/history"
	"github.com/officeedge/appliance/wan"
)

// maxRange is the widest view the charts ask for: the coarse ring's span.
const maxRange = 8 * 24 * time.Hour

// figures sums up an uplink's targets: the best round trip (ms) and the mean loss (percent)
// of those probed in the window; ok is false when none was.
func figures(u wan.UplinkStatus) (rtt, loss float64, ok bool) {
	n := 0
	for _, t := range u.Targets {
		if t.Sent == 0 {
			continue
		}
		if r := float64(t.RTT) / float64(time.Millisecond); r > 0 && (rtt == 0 || r < rtt) {
			rtt = r
		}
		loss += float64(t.LossPct)
		n++
	}
	if n == 0 {
		return 0, 0, false
	}
	return rtt, loss / float64(n), true
}

// HistoryView is what /api/history answers: the series asked for, at the step the range
// took (10 s up to a day back, 5 minutes beyond), and the failovers in the range.
type HistoryView struct {
	Zone   string                     `json:"zone"` // the site's IANA zone, for the charts' axes
	From   int64                      `json:"from"` // unix seconds
	To     int64                      `json:"to"`
	Step   int64                      `json:"step_s"`
	Names  []string                   `json:"names"` // every series held
	Series map[string][]history.Point `json:"series"`
	Marks  []history.Mark             `json:"marks"`
}

// handleHistory serves GET /api/history?series=PATTERN,...&from=UNIX&to=UNIX; a pattern
// may hold * for one part of a name ("uplink/*/rtt_ms"); the range defaults to the last day.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	if s.o.History == nil || s.o.History() == nil {
		httpError(w, http.StatusNotFound, "no history is kept (the appliance has no state directory)")
		return
	}
	st := s.o.History()
	now := s.o.Now()
	q := r.URL.Query()
	to, err := unixParam(q.Get("to"), now)
	if err != nil {
		httpError(w, http.StatusBadRequest, "to: "+err.Error())
		return
	}
	from, err := unixParam(q.Get("from"), to.Add(-24*time.Hour))
	if err != nil {
		httpError(w, http.StatusBadRequest, "from: "+err.Error())
		return
	}
	if !from.Before(to) || to.Sub(from) > maxRange {
		httpError(w, http.StatusBadRequest, "from must be before to, at most 8 days apart")
		return
	}
	v := HistoryView{Zone: s.o.Config().Location().String(), From: from.Unix(), To: to.Unix(), Names: st.Names(),
		Series: map[string][]history.Point{}, Marks: st.Marks(from, to)}
	var pats []string
	if p := q.Get("series"); p != "" {
		pats = strings.Split(p, ",")
	}
	for _, n := range v.Names {
		for _, p := range pats {
			if ok, _ := path.Match(p, n); ok {
				pts, step := st.Query(n, from, to, now)
				// Never null: an empty series is drawn as one without points.
				v.Series[n], v.Step = append([]history.Point{}, pts...), int64(step/time.Second)
				break
			}
		}
	}
	if v.Step == 0 {
		_, step := st.Query("", from, to, now)
		v.Step = int64(step / time.Second)
	}
	if v.Marks == nil {
		v.Marks = []history.Mark{}
	}
	writeJSON(w, http.StatusOK, v)
}

func unixParam(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(n, 0), nil
}

// handleBudget serves GET /api/budget: each capped uplink's data use.
func (s *Server) handleBudget(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.budgets())
}

func (s *Server) budgets() []history.UplinkUsage {
	out := []history.UplinkUsage{}
	if s.o.Budgets != nil {
		out = append(out, s.o.Budgets()...)
	}
	return out
}

var (
	mBudget     = prometheus.NewDesc("appliance_data_budget_bytes", "An uplink's data allowance per billing period.", []string{"uplink", "role"}, nil)
	mUsed       = prometheus.NewDesc("appliance_data_used_bytes", "Bytes in and out of an uplink in its billing period.", []string{"uplink", "role"}, nil)
	mProjected  = prometheus.NewDesc("appliance_data_projected_bytes", "An uplink's use at its billing period's end, at the rate so far.", []string{"uplink", "role"}, nil)
	mPeriodEnd  = prometheus.NewDesc("appliance_data_period_end_timestamp_seconds", "When an uplink's data allowance renews.", []string{"uplink", "role"}, nil)
	budgetDescs = []*prometheus.Desc{mBudget, mUsed, mProjected, mPeriodEnd}
)

func (s *Server) collectBudgets(g metric) {
	for _, u := range s.budgets() {
		g(mBudget, float64(u.Budget), u.Name, u.Role)
		g(mUsed, float64(u.Used), u.Name, u.Role)
		g(mProjected, float64(u.Projected), u.Name, u.Role)
		g(mPeriodEnd, float64(u.PeriodEnd.Unix()), u.Name, u.Role)
	}
}
