package web

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// The model reads the other parts' events generically, by kind prefix and by the field names
// they are likely to use, so the page works as soon as those events exist:
//
//	uplink.* / wan.*   Fields: uplink|name|role|interface, state (up/down/degraded), active,
//	                   rtt_ms|rtt (ms or a duration), loss|loss_pct (percent); kinds ending
//	                   .up/.down; kinds containing failover/failback/force/switch are history
//	trunk.* / sipguard.trunk*  Fields: trunk|name; kinds ending .up/.down
//	*block* (not unblock)      Fields: addr|address|ip|src|prefix, reason, packets|dropped,
//	                           pcap|evidence (a file in the state directory), abuse|abuse_contact
//	severity alert             counted until acknowledged (alert.acknowledged)

// Sample is one health-check reading of an uplink.
type Sample struct {
	T    time.Time `json:"t"`
	RTT  float64   `json:"rtt_ms"`
	Loss float64   `json:"loss_pct"`
}

// UplinkView is one uplink as the page shows it.
type UplinkView struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Interface string    `json:"interface"`
	State     string    `json:"state"` // up, down, degraded, unknown
	Reason    string    `json:"reason,omitempty"`
	Active    bool      `json:"active"`
	Since     time.Time `json:"since,omitzero"`
	RTT       float64   `json:"rtt_ms"`
	Loss      float64   `json:"loss_pct"`
	History   []Sample  `json:"history"` // the last hour
}

// TrunkView is one SIP trunk's health.
type TrunkView struct {
	Name    string    `json:"name"`
	State   string    `json:"state"`
	Since   time.Time `json:"since"`
	Message string    `json:"message"`
}

type blockInfo struct {
	Reason  string
	Since   time.Time
	Packets string
	Pcap    string
	Abuse   string
	Source  string
	Events  []events.Event
}

type model struct {
	mu        sync.Mutex
	uplinks   map[string]*UplinkView // by role
	active    string                 // role
	failovers []events.Event
	trunks    map[string]*TrunkView
	blocks    map[string]*blockInfo // by prefix string
	alerts    int
	bothDown  bool
	mode      string // from wan: auto, backup, primary ("" when wan does not say)
}

func newModel() *model {
	return &model{uplinks: map[string]*UplinkView{}, trunks: map[string]*TrunkView{}, blocks: map[string]*blockInfo{}, active: "primary"}
}

func field(e events.Event, keys ...string) string {
	for _, k := range keys {
		if v := e.Fields[k]; v != "" {
			return v
		}
	}
	return ""
}

// number reads "12.5", "12.5ms", "3%" or a Go duration (as milliseconds).
func number(s string) (float64, bool) {
	s = strings.TrimSpace(strings.TrimSuffix(s, "%"))
	if s == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f, true
	}
	if d, err := time.ParseDuration(s); err == nil {
		return float64(d) / float64(time.Millisecond), true
	}
	return 0, false
}

// role finds which configured uplink a name (name, role or interface) is.
func role(cfg *config.Config, name string) string {
	for _, u := range cfg.Uplink.All() {
		if strings.EqualFold(name, u.Name) || name == u.Role || name == u.Interface {
			return u.Role
		}
	}
	return ""
}

func (m *model) observe(cfg *config.Config, e events.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := strings.ToLower(e.Kind)
	if e.Severity == events.Alert {
		m.alerts++
	}
	switch {
	case k == "alert.acknowledged":
		m.alerts = 0
	case strings.HasPrefix(k, "trunk.") || strings.HasPrefix(k, "sipguard.trunk"):
		name := field(e, "trunk", "name")
		if name == "" {
			name = "trunk"
		}
		t := m.trunks[name]
		if t == nil {
			t = &TrunkView{Name: name}
			m.trunks[name] = t
		}
		st := field(e, "state")
		if strings.HasSuffix(k, ".down") {
			st = "down"
		} else if strings.HasSuffix(k, ".up") {
			st = "up"
		}
		if st != "" && st != t.State {
			t.State, t.Since = st, e.Time
		}
		t.Message = e.Message
	case strings.HasPrefix(k, "uplink.") || strings.HasPrefix(k, "wan."):
		m.observeWAN(cfg, k, e)
	case strings.Contains(k, "unblock"):
		if a := field(e, "addr", "address", "ip", "src", "prefix"); a != "" {
			delete(m.blocks, canonical(a))
		}
	case strings.Contains(k, "block"):
		a := field(e, "addr", "address", "ip", "src", "prefix")
		if a == "" {
			return
		}
		key := canonical(a)
		b := m.blocks[key]
		if b == nil {
			b = &blockInfo{Since: e.Time}
			m.blocks[key] = b
			if len(m.blocks) > 10000 { // a bound on memory under a distributed attack
				for k := range m.blocks {
					delete(m.blocks, k)
					break
				}
			}
		}
		b.Reason = firstNonEmpty(field(e, "reason"), e.Message, b.Reason)
		b.Packets = firstNonEmpty(field(e, "packets", "dropped"), b.Packets)
		b.Pcap = firstNonEmpty(field(e, "pcap", "evidence"), b.Pcap)
		b.Abuse = firstNonEmpty(field(e, "abuse", "abuse_contact"), b.Abuse)
		b.Source = e.Source
		if len(b.Events) < 20 {
			b.Events = append(b.Events, e)
		}
	}
}

func (m *model) observeWAN(cfg *config.Config, k string, e events.Event) {
	if a := field(e, "active", "to"); a != "" {
		if r := role(cfg, a); r != "" {
			m.active = r
		}
	}
	switch {
	case strings.Contains(k, "failover") && field(e, "active", "to") == "":
		m.active = "backup"
	case strings.Contains(k, "failback") && field(e, "active", "to") == "":
		m.active = "primary"
	case strings.HasSuffix(k, "both_down"):
		m.bothDown = true
	case strings.HasSuffix(k, ".online"):
		m.bothDown = false
	}
	if strings.Contains(k, "failover") || strings.Contains(k, "failback") || strings.Contains(k, "force") || strings.Contains(k, "override") || strings.Contains(k, "switch") || strings.HasSuffix(k, "both_down") || strings.HasSuffix(k, ".online") {
		m.failovers = append(m.failovers, e)
		if len(m.failovers) > 100 {
			m.failovers = m.failovers[len(m.failovers)-100:]
		}
	}
	r := role(cfg, field(e, "uplink", "name", "role", "link", "interface"))
	if r == "" {
		return
	}
	u := m.uplinks[r]
	if u == nil {
		u = &UplinkView{Role: r, State: "unknown"}
		m.uplinks[r] = u
	}
	st := field(e, "state")
	if strings.HasSuffix(k, ".down") {
		st = "down"
	} else if strings.HasSuffix(k, ".up") {
		st = "up"
	} else if strings.HasSuffix(k, ".degraded") {
		st = "degraded"
	}
	if st != "" && st != u.State {
		u.State, u.Since = st, e.Time
	}
	if st == "up" {
		m.bothDown = false
	}
	rtt, okR := number(field(e, "rtt_ms", "rtt"))
	loss, okL := number(field(e, "loss_pct", "loss"))
	// Per-target figures ("rtt:icmp:192.0.2.53" = "1.2ms", "loss:..." = "0% (0/10)"): the
	// best round trip and the mean loss stand for the uplink.
	var nl int
	var sumL float64
	for key, v := range e.Fields {
		if strings.HasPrefix(key, "rtt:") {
			if r, ok := number(v); ok && (!okR || r < rtt) {
				rtt, okR = r, true
			}
		}
		if strings.HasPrefix(key, "loss:") {
			if l, ok := number(strings.Fields(v + " ")[0]); ok {
				sumL += l
				nl++
			}
		}
	}
	if nl > 0 && !okL {
		loss, okL = sumL/float64(nl), true
	}
	if okR || okL {
		if okR {
			u.RTT = rtt
		}
		if okL {
			u.Loss = loss
		}
		u.addSample(Sample{T: e.Time, RTT: u.RTT, Loss: u.Loss})
	}
}

func (u *UplinkView) addSample(s Sample) {
	if n := len(u.History); n > 0 && s.T.Sub(u.History[n-1].T) < 5*time.Second {
		u.History[n-1] = s // one reading per 5 s is plenty for a chart of an hour
	} else {
		u.History = append(u.History, s)
	}
	cut := 0
	for cut < len(u.History) && s.T.Sub(u.History[cut].T) > time.Hour {
		cut++
	}
	u.History = u.History[cut:]
}

// wanMirror is the part of the wan's own status (GET /wan/status) the page uses; when wan
// answers, it is the truth and the events fill in history only.
type wanMirror struct {
	Active   string `json:"active"`
	Mode     string `json:"mode"`
	BothDown bool   `json:"both_down"`
	Uplinks  []struct {
		Role    string    `json:"role"`
		State   string    `json:"state"`
		Since   time.Time `json:"since"`
		Reason  string    `json:"reason"`
		Targets []struct {
			LossPct float64 `json:"loss_pct"`
			RTT     int64   `json:"rtt_ns"`
			Sent    int     `json:"sent"`
		} `json:"targets"`
	} `json:"uplinks"`
	Trunks []struct {
		Name   string    `json:"name"`
		Target string    `json:"target"`
		State  string    `json:"state"`
		Since  time.Time `json:"since"`
		Via    string    `json:"via"`
		RTT    int64     `json:"rtt_ns"`
	} `json:"trunks"`
}

// apply takes the wan's status in, recording a sample of each uplink's figures at now.
func (m *model) apply(w *wanMirror, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.Active != "" {
		m.active = w.Active
	}
	m.bothDown, m.mode = w.BothDown, w.Mode
	for _, wu := range w.Uplinks {
		u := m.uplinks[wu.Role]
		if u == nil {
			u = &UplinkView{Role: wu.Role}
			m.uplinks[wu.Role] = u
		}
		u.State, u.Since, u.Reason = wu.State, wu.Since, wu.Reason
		var best, loss float64
		n := 0
		for _, t := range wu.Targets {
			if t.Sent == 0 {
				continue
			}
			if r := float64(t.RTT) / 1e6; r > 0 && (best == 0 || r < best) {
				best = r
			}
			loss += t.LossPct
			n++
		}
		if n > 0 {
			u.RTT, u.Loss = best, loss/float64(n)
			u.addSample(Sample{T: now, RTT: u.RTT, Loss: u.Loss})
		}
	}
	for _, t := range w.Trunks {
		m.trunks[t.Name] = &TrunkView{Name: t.Name, State: t.State, Since: t.Since,
			Message: fmt.Sprintf("OPTIONS to %s via %s, %.1f ms", t.Target, t.Via, float64(t.RTT)/1e6)}
	}
}

func canonical(a string) string {
	if p, err := netip.ParsePrefix(a); err == nil {
		if p.IsSingleIP() {
			return p.Addr().Unmap().String()
		}
		return p.Masked().String()
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.Unmap().String()
	}
	return a
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// uplinkViews returns every configured uplink with what is known of it.
func (m *model) uplinkViews(cfg *config.Config) (out []UplinkView, active string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range cfg.Uplink.All() {
		v := UplinkView{Name: u.Name, Role: u.Role, Interface: u.Interface, State: "unknown", History: []Sample{}}
		if s := m.uplinks[u.Role]; s != nil {
			v.State, v.Since, v.RTT, v.Loss, v.Reason = s.State, s.Since, s.RTT, s.Loss, s.Reason
			v.History = append(v.History, s.History...)
		}
		v.Active = u.Role == m.active && !m.bothDown
		if v.Active {
			active = u.Name
		}
		out = append(out, v)
	}
	return out, active
}
