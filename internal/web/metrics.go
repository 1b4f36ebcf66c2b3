package web

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector turns a status snapshot into Prometheus metrics at each scrape.
type collector struct{ s *Server }

var (
	mInfo     = prometheus.NewDesc("appliance_build_info", "The running firmware.", []string{"version", "build_time", "site"}, nil)
	mUp       = prometheus.NewDesc("appliance_uplink_up", "1 if the uplink's health checks pass.", []string{"uplink", "role"}, nil)
	mActive   = prometheus.NewDesc("appliance_uplink_active", "1 for the uplink carrying the office's traffic.", []string{"uplink", "role"}, nil)
	mRTT      = prometheus.NewDesc("appliance_uplink_rtt_seconds", "Last health-check round trip.", []string{"uplink", "role"}, nil)
	mLoss     = prometheus.NewDesc("appliance_uplink_loss_ratio", "Last health-check loss (0-1).", []string{"uplink", "role"}, nil)
	mBlocked  = prometheus.NewDesc("appliance_blocked_addresses", "Entries in the blocklist.", nil, nil)
	mLoaded   = prometheus.NewDesc("appliance_firewall_loaded", "1 if table inet appliance is in the kernel.", nil, nil)
	mPackets  = prometheus.NewDesc("appliance_firewall_rule_packets_total", "Packets that hit a firewall rule.", []string{"chain", "handle", "rule"}, nil)
	mBytes    = prometheus.NewDesc("appliance_firewall_rule_bytes_total", "Bytes that hit a firewall rule.", []string{"chain", "handle", "rule"}, nil)
	mEvents   = prometheus.NewDesc("appliance_events_total", "Events seen since start, by kind and severity.", []string{"kind", "severity"}, nil)
	mAlerts   = prometheus.NewDesc("appliance_alerts_unacknowledged", "Alert events not yet acknowledged.", nil, nil)
	mLED      = prometheus.NewDesc("appliance_led_pattern", "1 for each LED's current pattern.", []string{"led", "pattern"}, nil)
	mMailQ    = prometheus.NewDesc("appliance_mail_queued", "Alert emails waiting to be sent.", nil, nil)
	mCheckOK  = prometheus.NewDesc("appliance_checklist_ok", "1 if the readiness check passes, 0 if it fails, -1 if unknown.", []string{"check"}, nil)
	mTrunkUp  = prometheus.NewDesc("appliance_trunk_up", "1 if the SIP trunk is up.", []string{"trunk"}, nil)
	allDescs  = []*prometheus.Desc{mInfo, mUp, mActive, mRTT, mLoss, mBlocked, mLoaded, mPackets, mBytes, mEvents, mAlerts, mLED, mMailQ, mCheckOK, mTrunkUp}
	boolGauge = map[bool]float64{true: 1, false: 0}
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.status()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	k := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	g(mInfo, 1, st.Version, st.BuildTime, st.Site)
	for _, u := range st.Uplinks {
		g(mUp, boolGauge[u.State == "up"], u.Name, u.Role)
		g(mActive, boolGauge[u.Active], u.Name, u.Role)
		g(mRTT, u.RTT/1000, u.Name, u.Role)
		g(mLoss, u.Loss/100, u.Name, u.Role)
	}
	for _, t := range st.Trunks {
		g(mTrunkUp, boolGauge[t.State == "up"], t.Name)
	}
	g(mBlocked, float64(len(st.Blocked)))
	g(mLoaded, boolGauge[st.Firewall.Loaded])
	for _, h := range st.Firewall.Hits {
		k(mPackets, float64(h.Packets), h.Chain, itoa(h.Handle), h.Comment)
		k(mBytes, float64(h.Bytes), h.Chain, itoa(h.Handle), h.Comment)
	}
	c.s.mu.Lock()
	for key, n := range c.s.counts {
		k(mEvents, float64(n), key[0], key[1])
	}
	c.s.mu.Unlock()
	g(mAlerts, float64(st.Alerts))
	for _, l := range st.LEDs {
		g(mLED, 1, l.Name, string(l.Pattern))
	}
	g(mMailQ, float64(st.Mail.Queued))
	for _, ck := range st.Checklist {
		v := map[string]float64{"ok": 1, "fail": 0, "unknown": -1}[ck.Result]
		g(mCheckOK, v, ck.ID)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
