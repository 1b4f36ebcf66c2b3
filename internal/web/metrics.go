package web

import (
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector turns a status snapshot into Prometheus metrics at each scrape.
type collector struct{ s *Server }

var (
	mInfo       = prometheus.NewDesc("appliance_build_info", "The running firmware.", []string{"version", "build_time", "site"}, nil)
	mUp         = prometheus.NewDesc("appliance_uplink_up", "1 if the uplink's health checks pass.", []string{"uplink", "role"}, nil)
	mActive     = prometheus.NewDesc("appliance_uplink_active", "1 for the uplink carrying the office's traffic.", []string{"uplink", "role"}, nil)
	mRTT        = prometheus.NewDesc("appliance_uplink_rtt_seconds", "Last health-check round trip.", []string{"uplink", "role"}, nil)
	mLoss       = prometheus.NewDesc("appliance_uplink_loss_ratio", "Last health-check loss (0-1).", []string{"uplink", "role"}, nil)
	mForced     = prometheus.NewDesc("appliance_uplink_forced", "1 while an uplink is forced by hand.", []string{"mode"}, nil)
	mBlocked    = prometheus.NewDesc("appliance_blocked_addresses", "Blocklist entries other than the community lists' (by hand, detectors).", nil, nil)
	mSet        = prometheus.NewDesc("appliance_blocklist_kernel_entries", "Elements written in each kernel block set.", []string{"set"}, nil)
	mFeed       = prometheus.NewDesc("appliance_blocklist_feed_entries", "Entries in force from each community list.", []string{"feed"}, nil)
	mFeedLoaded = prometheus.NewDesc("appliance_blocklist_feed_loaded_timestamp_seconds", "When each community list was last loaded.", []string{"feed"}, nil)
	mRepairs    = prometheus.NewDesc("appliance_blocklist_repairs_total", "Drift of the kernel's blocklist repaired since start.", nil, nil)
	mGuard      = map[string]*prometheus.Desc{
		"packets":   prometheus.NewDesc("appliance_sipguard_packets_total", "Packets sipguard read.", nil, nil),
		"sip":       prometheus.NewDesc("appliance_sipguard_sip_messages_total", "SIP messages sipguard parsed.", nil, nil),
		"malformed": prometheus.NewDesc("appliance_sipguard_malformed_total", "Packets or messages sipguard could not parse.", nil, nil),
		"tls":       prometheus.NewDesc("appliance_sipguard_tls_connections_total", "New SIP-over-TLS connections counted (not read).", nil, nil),
		"findings":  prometheus.NewDesc("appliance_sipguard_findings_total", "Detector findings.", nil, nil),
		"blocks":    prometheus.NewDesc("appliance_sipguard_blocks_total", "Sources sipguard blocked.", nil, nil),
		"alerts":    prometheus.NewDesc("appliance_sipguard_alerts_total", "Findings about sources never blocked (trusted peers, office hosts).", nil, nil),
		"dropped":   prometheus.NewDesc("appliance_sipguard_dropped_total", "Packets the capture socket dropped (kernel PACKET_STATISTICS) and findings sipguard could not queue.", nil, nil),
	}
	mGuardSources = prometheus.NewDesc("appliance_sipguard_sources", "Sources sipguard tracks now.", nil, nil)
	mLoaded       = prometheus.NewDesc("appliance_firewall_loaded", "1 if table inet appliance is in the kernel.", nil, nil)
	// Rules are named by chain and comment, never by handle (new on every reload): the
	// rules of a chain with one comment (its IPv4 and IPv6 halves) are summed.
	mPackets      = prometheus.NewDesc("appliance_firewall_rule_packets_total", "Packets that hit the firewall rules of one purpose (comment).", []string{"chain", "rule"}, nil)
	mBytes        = prometheus.NewDesc("appliance_firewall_rule_bytes_total", "Bytes that hit the firewall rules of one purpose (comment).", []string{"chain", "rule"}, nil)
	mDroppedSeen  = prometheus.NewDesc("appliance_firewall_dropped_sources", "Distinct sources the firewall dropped from the internet in the window.", []string{"window"}, nil)
	mDetections   = prometheus.NewDesc("appliance_sipguard_detections_total", "Findings of each sipguard detector.", []string{"detector"}, nil)
	mEvents       = prometheus.NewDesc("appliance_events_total", "Events seen since start, by kind and severity.", []string{"kind", "severity"}, nil)
	mAlerts       = prometheus.NewDesc("appliance_alerts_unacknowledged", "Alerts not yet acknowledged.", nil, nil)
	mAlertsActive = prometheus.NewDesc("appliance_alerts_active", "Alerts whose condition lasts.", nil, nil)
	mLED          = prometheus.NewDesc("appliance_led_pattern", "1 for each LED's current pattern.", []string{"led", "pattern"}, nil)
	mMailQ        = prometheus.NewDesc("appliance_mail_queued", "Alert emails waiting to be sent.", nil, nil)
	mCheckOK      = prometheus.NewDesc("appliance_checklist_ok", "1 if the readiness check passes (also with a warning), 0 if it fails, -1 if unknown.", []string{"check"}, nil)
	mTrunkUp      = prometheus.NewDesc("appliance_trunk_up", "1 if the SIP trunk is up.", []string{"trunk"}, nil)
	boolGauge     = map[bool]float64{true: 1, false: 0}

	mDHCPReceived = prometheus.NewDesc("appliance_dhcp_received_total", "DHCP packets the server read since it started.", nil, nil)
	mDHCPDropped  = prometheus.NewDesc("appliance_dhcp_dropped_total", "DHCP packets not served, by reason (per_device_limit, newcomer_limit, global_limit, queue_full, new_devices_limit, decline).", []string{"reason"}, nil)
	mDHCPWrites   = prometheus.NewDesc("appliance_dhcp_lease_file_writes_total", "Writes of the DHCP lease file since the server started.", nil, nil)
	mDNSQueries   = prometheus.NewDesc("appliance_dns_queries_total", "DNS queries the forwarder received since it started.", nil, nil)
	mDNSRefused   = prometheus.NewDesc("appliance_dns_refused_total", "DNS queries answered REFUSED, by reason (rate_limit: the client asked too fast; not_served: not from the LAN or a VPN phone, or not a query).", []string{"reason"}, nil)
	mDNSBusy      = prometheus.NewDesc("appliance_dns_busy_total", "DNS queries answered SERVFAIL at once: too many queries were waiting on resolvers.", nil, nil)
	mDNSCoalesced = prometheus.NewDesc("appliance_dns_coalesced_total", "DNS queries that waited on the same question already asked of a resolver.", nil, nil)
	mDNSFailed    = prometheus.NewDesc("appliance_dns_failed_total", "Questions asked of resolvers that none answered (answered SERVFAIL).", nil, nil)
)

// dhcpDropReasons are appliance_dhcp_dropped_total's reasons, each sent (0 until it happens)
// so that a rate over them starts from the start.
var dhcpDropReasons = []string{"per_device_limit", "newcomer_limit", "global_limit", "queue_full", "new_devices_limit", "decline"}

func allDescs() []*prometheus.Desc {
	out := []*prometheus.Desc{mInfo, mUp, mActive, mRTT, mLoss, mForced, mBlocked, mSet, mFeed, mFeedLoaded, mRepairs, mGuardSources,
		mLoaded, mPackets, mBytes, mDroppedSeen, mDetections, mEvents, mAlerts, mAlertsActive, mLED, mMailQ, mCheckOK, mTrunkUp,
		mDHCPReceived, mDHCPDropped, mDHCPWrites, mDNSQueries, mDNSRefused, mDNSBusy, mDNSCoalesced, mDNSFailed}
	out = append(out, backupDescs...)
	out = append(out, crowdSecDescs...)
	out = append(out, clockDescs...)
	out = append(out, vpnDescs...)
	out = append(out, callsDescs...)
	out = append(out, relayDescs...)
	out = append(out, budgetDescs...)
	out = append(out, shaperDescs...) // shaper.go
	for _, d := range mGuard {
		out = append(out, d)
	}
	return out
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs() {
		ch <- d
	}
}

// metric sends one sample.
type metric func(d *prometheus.Desc, v float64, labels ...string)

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.status()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	k := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	g(mInfo, 1, st.Version, st.BuildTime, st.Site)
	collectWAN(st, g)
	collectBlocklist(st, g, k)
	collectGuard(st, g, k)
	c.s.collectBackups(g)
	c.s.collectCrowdSec(g, k)
	c.s.collectClock(g)
	c.s.collectVPN(g, k)
	c.s.collectCalls(g, k)
	c.s.collectRelay(g, k)
	c.s.collectBudgets(g)
	c.s.collectShaper(g, k) // shaper.go
	c.s.collectDHCP(k)
	c.s.collectDNS(k)
	g(mLoaded, boolGauge[st.Firewall.Loaded])
	for _, c := range st.Firewall.Chains {
		for _, r := range c.Groups {
			k(mPackets, float64(r.Packets), c.Name, r.Comment)
			k(mBytes, float64(r.Bytes), c.Name, r.Comment)
		}
	}
	for _, w := range st.Firewall.Dropped {
		g(mDroppedSeen, float64(w.Seen), w.Window)
	}
	c.s.mu.Lock()
	for key, n := range c.s.counts {
		k(mEvents, float64(n), key[0], key[1])
	}
	c.s.mu.Unlock()
	g(mAlerts, float64(st.Unacked))
	active := 0
	for _, a := range st.Alerts {
		if a.Active {
			active++
		}
	}
	g(mAlertsActive, float64(active))
	for _, l := range st.LEDs {
		g(mLED, 1, l.Name, string(l.Pattern))
	}
	g(mMailQ, float64(st.Mail.Queued))
	for _, ck := range st.Checklist {
		v := map[string]float64{"ok": 1, "warn": 1, "fail": 0, "unknown": -1}[ck.Result]
		g(mCheckOK, v, ck.ID)
	}
}

func collectWAN(st Status, g metric) {
	for _, u := range st.Uplinks {
		g(mUp, boolGauge[u.State == "up"], u.Name, u.Role)
		g(mActive, boolGauge[u.Active], u.Name, u.Role)
		g(mRTT, u.RTT/1000, u.Name, u.Role)
		g(mLoss, u.Loss/100, u.Name, u.Role)
	}
	if st.Mode != "off" {
		g(mForced, boolGauge[st.Mode != "auto"], st.Mode)
	}
	for _, t := range st.Trunks {
		g(mTrunkUp, boolGauge[t.State == "up"], t.Name)
	}
}

func collectBlocklist(st Status, g, k metric) {
	b := st.Blocklist
	if !b.Available {
		return
	}
	g(mBlocked, float64(b.Total))
	for set, n := range map[string]int{"block4": b.Kernel.Addrs4, "block6": b.Kernel.Addrs6, "blocknet4": b.Kernel.Nets4, "blocknet6": b.Kernel.Nets6} {
		g(mSet, float64(n), set)
	}
	for _, f := range b.Feeds {
		g(mFeed, float64(f.Entries), f.Name)
		if !f.Loaded.IsZero() {
			g(mFeedLoaded, float64(f.Loaded.Unix()), f.Name)
		}
	}
	k(mRepairs, float64(b.Repairs))
}

func collectGuard(st Status, g, k metric) {
	s := st.SIPGuard
	if s == nil {
		return
	}
	for name, v := range map[string]uint64{"packets": s.Packets, "sip": s.SIP, "malformed": s.Malformed, "tls": s.TLS,
		"findings": s.Findings, "blocks": s.Blocks, "alerts": s.Alerts, "dropped": s.Dropped} {
		k(mGuard[name], float64(v))
	}
	g(mGuardSources, float64(s.Sources))
	for d, n := range s.Detections {
		k(mDetections, float64(n), d)
	}
}

// collectDHCP sends the DHCP server's counters: what floods cost it.
func (s *Server) collectDHCP(k metric) {
	if s.o.DHCPCounters == nil {
		return
	}
	c, ok := s.o.DHCPCounters()
	if !ok {
		return
	}
	k(mDHCPReceived, float64(c.Received))
	k(mDHCPWrites, float64(c.Writes))
	for _, r := range dhcpDropReasons {
		k(mDHCPDropped, float64(c.DroppedBy[r]), r)
	}
	for r, n := range c.DroppedBy {
		if !slices.Contains(dhcpDropReasons, r) { // a reason newer than this list
			k(mDHCPDropped, float64(n), r)
		}
	}
}

// collectDNS sends the DNS forwarder's counters: what floods cost it.
func (s *Server) collectDNS(k metric) {
	if s.o.DNS == nil {
		return
	}
	st, ok := s.o.DNS()
	if !ok {
		return
	}
	k(mDNSQueries, float64(st.Queries))
	k(mDNSRefused, float64(st.Limited), "rate_limit")
	k(mDNSRefused, float64(st.Refused), "not_served")
	k(mDNSBusy, float64(st.Busy))
	k(mDNSCoalesced, float64(st.Coalesced))
	k(mDNSFailed, float64(st.Failed))
}

func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s})
	for _, c := range s.o.Collectors {
		reg.MustRegister(c)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
