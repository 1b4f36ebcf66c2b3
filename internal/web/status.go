package web

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/notify"
	"github.com/officeedge/appliance/internal/version"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
	"github.com/officeedge/appliance/wan"
)

// Status is everything the page shows, as the JSON API returns it. It is built from the
// parts' typed snapshots at each request.
type Status struct {
	Version    string         `json:"version"`
	BuildTime  string         `json:"build_time"`
	Site       string         `json:"site"`
	Time       time.Time      `json:"time"`
	Zone       Zone           `json:"zone"` // the site's time zone: the page writes every time in it
	Firewall   FirewallState  `json:"firewall"`
	Active     string         `json:"active_uplink"` // the uplink's name; "" when none carries traffic
	Mode       string         `json:"mode"`          // auto, backup or primary (forced), off (no wan)
	BothDown   bool           `json:"both_down"`
	FailbackAt time.Time      `json:"failback_at,omitzero"`
	Uplinks    []UplinkView   `json:"uplinks"`
	WANEvents  []events.Event `json:"wan_events"` // the wan's own history, newest first
	Trunks     []TrunkView    `json:"trunks"`
	// Registration is the PBX's registration interval as seen in its REGISTERs (nil: none
	// seen yet), with a warning when inbound calls would take long to return after a failover.
	Registration *wan.Registration `json:"registration,omitempty"`
	Blocklist    BlocklistView     `json:"blocklist"`
	SIPGuard     *GuardView        `json:"sipguard,omitempty"` // nil when sipguard is off
	Alerts       []AlertView       `json:"alerts"`             // active first, then cleared but unacknowledged
	Unacked      int               `json:"alerts_unacked"`
	Events       []events.Event    `json:"events"` // newest first
	Board        string            `json:"board"`
	LEDs         []LEDView         `json:"leds"`
	Checklist    []Check           `json:"checklist"`
	Mail         notify.Status     `json:"mail"`
	TLS          *CertInfo         `json:"tls,omitempty"` // the HTTPS certificate, to compare with what the browser shows
}

// Zone is the site's time zone ([site] timezone): its IANA name for the browser's
// Intl.DateTimeFormat, and its offset from UTC now.
type Zone struct {
	Name   string `json:"name"`
	Abbrev string `json:"abbrev"`   // "CET"
	Offset int    `json:"offset_s"` // seconds east of UTC
}

// AlertView is one alert with what a person should do about it.
type AlertView struct {
	alerts.Alert
	Advice string `json:"advice"`
}

// LEDView is one LED with what its pattern means and what to do (hal.Meanings).
type LEDView struct {
	hal.LEDState
	Looks string `json:"looks"`
	Do    string `json:"do"`
}

// UplinkView is one uplink as the page shows it.
type UplinkView struct {
	Name      string       `json:"name"`
	Role      string       `json:"role"`
	Interface string       `json:"interface"`
	State     string       `json:"state"` // up, down, degraded, unknown
	Reason    string       `json:"reason,omitempty"`
	Active    bool         `json:"active"`
	Carrier   bool         `json:"carrier"`
	Probing   string       `json:"probing,omitempty"` // fast or standby
	Since     time.Time    `json:"since,omitzero"`
	RTT       float64      `json:"rtt_ms"`   // the best target's median round trip
	Loss      float64      `json:"loss_pct"` // the targets' mean loss
	Targets   []TargetView `json:"targets"`
}

// TargetView is one health-check target through one uplink.
type TargetView struct {
	Target    string  `json:"target"`
	LossPct   int     `json:"loss_pct"`
	RTT       float64 `json:"rtt_ms"`
	Sent      int     `json:"sent"`
	LastError string  `json:"last_error,omitempty"`
}

// TrunkView is one SIP trunk's health.
type TrunkView struct {
	Name    string    `json:"name"`
	Target  string    `json:"target"`
	State   string    `json:"state"`
	Since   time.Time `json:"since"`
	Via     string    `json:"via,omitempty"`
	RTT     float64   `json:"rtt_ms"`
	Message string    `json:"message"`
}

// BlocklistView is the blocklist: its entries (not the community lists' own: those are one
// line per list), the lists, and what the kernel holds.
type BlocklistView struct {
	Entries   []BlockedView     `json:"entries"` // newest first, at most maxEntriesShown
	Total     int               `json:"total"`   // entries other than the community lists'
	Feeds     []netcfg.FeedInfo `json:"feeds"`
	Kernel    KernelView        `json:"kernel"`
	Repairs   int               `json:"repairs"` // drift repaired since start
	Error     string            `json:"error,omitempty"`
	Available bool              `json:"available"`
}

// maxEntriesShown bounds the entries a snapshot carries: under a distributed attack the
// blocklist holds thousands, and every open page and scrape pays for each.
const maxEntriesShown = 1000

// KernelView counts the elements written in the four block sets.
type KernelView struct {
	Addrs4 int `json:"addrs4"` // block4
	Addrs6 int `json:"addrs6"` // block6
	Nets4  int `json:"nets4"`  // blocknet4
	Nets6  int `json:"nets6"`  // blocknet6
	Total  int `json:"total"`
}

// BlockedView is one blocklist entry with who blocked it, why and until when.
type BlockedView struct {
	Addr      string         `json:"addr"`    // an address, or a network
	Sources   []string       `json:"sources"` // manual, sipguard, feed:NAME, restore
	Claims    []netcfg.Claim `json:"claims"`
	Reason    string         `json:"reason"`
	Detail    string         `json:"detail,omitempty"`  // sipguard's: the user agent, the number dialled...
	Offense   int            `json:"offense,omitempty"` // sipguard's: 1 for a first block
	Since     time.Time      `json:"since,omitzero"`
	Until     time.Time      `json:"until,omitzero"` // zero: until unblocked
	Remaining string         `json:"remaining,omitempty"`
	Packets   *uint64        `json:"packets_dropped"` // null: not counted
	Evidence  bool           `json:"evidence"`        // a pcap can be downloaded
	ReportURL string         `json:"report_url"`
}

// GuardView is sipguard's running totals.
type GuardView struct {
	Packets   uint64 `json:"packets"`
	SIP       uint64 `json:"sip"`
	Malformed uint64 `json:"malformed"`
	TLS       uint64 `json:"tls"`
	Findings  uint64 `json:"findings"`
	Blocks    uint64 `json:"blocks"`
	Alerts    uint64 `json:"alerts"`
	Dropped   uint64 `json:"dropped"`
	Sources   int    `json:"sources"` // sources tracked now
	// Detections are the findings of each detector, by its name ("brute-force").
	Detections map[string]uint64 `json:"detections"`
}

// wan reads the wan's status; ok is false when it is off.
func (s *Server) wan() (wan.Status, bool) {
	if s.o.WAN == nil {
		return wan.Status{}, false
	}
	return s.o.WAN()
}

// mode is the uplink override now, for the audit log.
func (s *Server) mode() string {
	if ws, ok := s.wan(); ok {
		return string(ws.Mode)
	}
	return "off"
}

func (s *Server) status() Status {
	cfg := s.o.Config()
	st := Status{
		Version: version.Version, BuildTime: version.BuildTime, Site: cfg.Site,
		Time: s.o.Now(), Firewall: s.o.ReadFirewall(),
		WANEvents: []events.Event{}, Trunks: []TrunkView{}, Alerts: []AlertView{}, Events: []events.Event{},
	}
	loc := cfg.Location()
	abbrev, off := st.Time.In(loc).Zone()
	st.Zone = Zone{Name: loc.String(), Abbrev: abbrev, Offset: off}
	st.Firewall.Chains = s.fw.words.chainViews(cfg, st.Firewall.Hits)
	if st.Firewall.Loaded {
		var err error
		if st.Firewall.Dropped, err = s.droppedNow(st.Time); err != nil && st.Firewall.Error == "" {
			st.Firewall.Error = err.Error()
		}
	}
	s.wanStatus(cfg, &st)
	st.Blocklist = s.blocklist(st.Time)
	st.SIPGuard = s.guard()
	if s.o.Alerts != nil {
		for _, a := range s.o.Alerts.List() {
			st.Alerts = append(st.Alerts, AlertView{Alert: a, Advice: alerts.Advice(a.Key)})
		}
		st.Unacked = s.o.Alerts.Unacked()
	}
	recent := s.o.Bus.Recent(50)
	for i := len(recent) - 1; i >= 0; i-- {
		st.Events = append(st.Events, recent[i])
	}
	st.Board = "none"
	if s.o.Board != nil {
		st.Board, st.LEDs = s.o.Board.Name(), ledViews(s.o.Board.LEDs())
	}
	if s.o.Mail != nil {
		st.Mail = s.o.Mail()
	}
	if s.o.Certs != nil {
		if ci, ok := s.o.Certs.Info(); ok {
			st.TLS = &ci
		}
	}
	st.Checklist = s.checklist(cfg, &st)
	return st
}

// wanStatus fills in the uplinks, the trunks and the wan's history.
func (s *Server) wanStatus(cfg *config.Config, st *Status) {
	ws, ok := s.wan()
	if !ok {
		st.Mode = "off"
		for _, u := range cfg.Uplink.All() {
			st.Uplinks = append(st.Uplinks, UplinkView{Name: u.Name, Role: u.Role, Interface: u.Interface, State: string(wan.Unknown),
				Reason: "failover (wan) is off", Targets: []TargetView{}})
		}
		return
	}
	st.Mode, st.BothDown, st.FailbackAt = string(ws.Mode), ws.BothDown, ws.FailbackAt
	for _, u := range ws.Uplinks {
		v := s.uplinkView(u, u.Role == ws.Active && !ws.BothDown)
		if v.Active {
			st.Active = v.Name
		}
		st.Uplinks = append(st.Uplinks, v)
	}
	for _, t := range ws.Trunks {
		st.Trunks = append(st.Trunks, trunkView(t))
	}
	st.Registration = ws.Registration
	for i := len(ws.Events) - 1; i >= 0 && len(st.WANEvents) < 50; i-- {
		st.WANEvents = append(st.WANEvents, ws.Events[i])
	}
}

func (s *Server) uplinkView(u wan.UplinkStatus, active bool) UplinkView {
	v := UplinkView{Name: u.Name, Role: string(u.Role), Interface: u.Interface, State: string(u.State), Reason: u.Reason,
		Active: active, Carrier: u.Carrier, Probing: u.Probing, Since: u.Since, Targets: []TargetView{}}
	v.RTT, v.Loss, _ = figures(u)
	for _, t := range u.Targets {
		v.Targets = append(v.Targets, TargetView{Target: t.Target, LossPct: t.LossPct, RTT: ms(t.RTT), Sent: t.Sent, LastError: t.LastError})
	}
	return v
}

func trunkView(t wan.TrunkStatus) TrunkView {
	v := TrunkView{Name: t.Name, Target: t.Target, State: string(t.State), Since: t.Since, Via: t.Via, RTT: ms(t.RTT)}
	v.Message = "OPTIONS to " + t.Target
	if t.Via != "" {
		v.Message += " via " + t.Via
	}
	if t.RTT > 0 {
		v.Message += ", " + t.RTT.Round(100*time.Microsecond).String()
	}
	return v
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// blocklist builds the blocklist's view from the owner's snapshot and sipguard's records.
func (s *Server) blocklist(now time.Time) BlocklistView {
	v := BlocklistView{Entries: []BlockedView{}, Feeds: []netcfg.FeedInfo{}}
	if s.o.Blocklist == nil {
		v.Error = "the blocklist is not available"
		return v
	}
	bs := s.o.Blocklist.State()
	k := bs.Kernel
	v.Available, v.Total, v.Repairs, v.Error = true, len(bs.Entries), bs.Repairs, bs.LastError
	v.Kernel = KernelView{Addrs4: k.Addrs4, Addrs6: k.Addrs6, Nets4: k.Nets4, Nets6: k.Nets6, Total: k.Total()}
	v.Feeds = append(v.Feeds, bs.Feeds...)
	shown := newest(bs.Entries, maxEntriesShown)
	guard := s.guardEntries(shown)
	packets := s.o.Blocklist.Packets()
	for _, e := range shown {
		v.Entries = append(v.Entries, s.blockedView(e, guard[e.Prefix.Masked()], packets, now))
	}
	return v
}

// newest returns up to n entries, the most recent first.
func newest(es []netcfg.Entry, n int) []netcfg.Entry {
	out := slices.Clone(es) // the snapshot is shared: never sort it in place
	slices.SortStableFunc(out, func(a, b netcfg.Entry) int { return b.Since().Compare(a.Since()) })
	return out[:min(n, len(out))]
}

// guardEntries reads sipguard's records by prefix, only when an entry shown is sipguard's.
func (s *Server) guardEntries(shown []netcfg.Entry) map[netip.Prefix]sipguard.Entry {
	out := map[netip.Prefix]sipguard.Entry{}
	if s.o.GuardEntries == nil || !slices.ContainsFunc(shown, hasGuardClaim) {
		return out
	}
	for _, g := range s.o.GuardEntries() {
		out[g.Prefix.Masked()] = g
	}
	return out
}

func hasGuardClaim(e netcfg.Entry) bool {
	return slices.ContainsFunc(e.Claims, func(c netcfg.Claim) bool { return c.Source == netcfg.SourceSIPGuard })
}

func (s *Server) blockedView(e netcfg.Entry, g sipguard.Entry, packets map[netip.Prefix]uint64, now time.Time) BlockedView {
	addr := canonical(e.Prefix)
	v := BlockedView{Addr: addr, Claims: e.Claims, Sources: e.Sources(), Reason: cmp.Or(e.Reason(), g.Reason), Detail: g.Detail,
		Offense: g.Offense, Since: e.Since(), Until: e.Until(), ReportURL: "/api/abuse?addr=" + addr}
	if v.Claims == nil {
		v.Claims = []netcfg.Claim{}
	}
	if !v.Until.IsZero() && v.Until.After(now) {
		v.Remaining = v.Until.Sub(now).Round(time.Second).String()
	}
	if n, ok := packets[e.Prefix]; ok {
		v.Packets = &n
	}
	_, v.Evidence = s.inState(g.Evidence)
	return v
}

// canonical writes a blocked prefix as people do: an address alone, a network with its length.
func canonical(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().Unmap().String()
	}
	return p.Masked().String()
}

// guard reads sipguard's counters; nil when it is off.
func (s *Server) guard() *GuardView {
	if s.o.Guard == nil {
		return nil
	}
	st, tracked, ok := s.o.Guard()
	if !ok {
		return nil
	}
	return &GuardView{Packets: st.Packets, SIP: st.SIP, Malformed: st.Malformed, TLS: st.TLS, Findings: st.Findings,
		Blocks: st.Blocks, Alerts: st.Alerts, Dropped: st.Dropped, Sources: tracked, Detections: st.ByDetector()}
}

// ledViews adds to each LED how its pattern looks and what to do about it.
func ledViews(ls []hal.LEDState) []LEDView {
	out := make([]LEDView, 0, len(ls))
	for _, l := range ls {
		v := LEDView{LEDState: l, Looks: l.Pattern.Looks()}
		for _, m := range hal.Meanings {
			if m.LED == l.Name && m.Pattern == l.Pattern {
				v.Do = m.Do
			}
		}
		out = append(out, v)
	}
	return out
}
