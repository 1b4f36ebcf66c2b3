package crowdsec

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/store"
	"github.com/officeedge/appliance/netcfg"
)

// maxQueue bounds the alerts kept while the LAPI is away (a week of a busy office's blocks);
// past it the oldest go: the fleet learns less, the box loses nothing.
const maxQueue = 10000

// Scenarios are the names the box's alerts carry, one per sipguard detector.
func Scenarios() []string {
	kinds := []string{"scanner", "brute-force", "unanswered-challenges", "enumeration", "flood",
		"toll-fraud", "call-rate", "concurrent-calls"}
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = scenario(k)
	}
	return out
}

// scenario names a detector's alerts: "brute-force" is officeedge/sip-bruteforce.
func scenario(kind string) string {
	return "officeedge/sip-" + strings.ReplaceAll(strings.ToLower(kind), "-", "")
}

// machine turns each new sipguard block whose source proved its address into an alert and
// keeps them on disk until sent.
type machine struct {
	site    string
	path    string // the queue's file; "" keeps it in memory
	shared  Shared // nil: nothing is shared
	local   int    // sipguard blocks kept local since start: their sources proved nothing
	seen    map[netip.Prefix]time.Time
	queue   []Alert
	dropped int   // alerts lost over maxQueue
	saveErr error // the queue's last write, when it failed
}

// newMachine loads the queue at path. An unreadable queue starts empty with an error to
// log: lost alerts are no reason to stop sharing.
func newMachine(site, path string, shared Shared) (*machine, error) {
	m := &machine{site: site, path: path, shared: shared}
	if path == "" {
		return m, nil
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return m, fmt.Errorf("crowdsec: read the alert queue: %w", err)
	default:
		if err := json.Unmarshal(data, &m.queue); err != nil {
			m.queue = nil
			return m, fmt.Errorf("crowdsec: alert queue %s unreadable, starting empty: %w", path, err)
		}
	}
	return m, nil
}

// observe finds sipguard's new verdicts in the owner's state (a first block, or a longer one
// for a repeat offence) and queues an alert for each whose source proved its address (see
// Shared); the others stay local. The first look only learns what is there: those were
// sent, or queued, by the run that made them.
func (m *machine) observe(st *netcfg.BlockState, now time.Time) (added int) {
	first := m.seen == nil
	next := make(map[netip.Prefix]time.Time, len(m.seen))
	for _, e := range st.Entries {
		c, ok := claimIn(e, netcfg.SourceSIPGuard)
		if !ok {
			continue
		}
		next[e.Prefix] = c.Since
		if first || m.seen[e.Prefix].Equal(c.Since) {
			continue
		}
		why, ok := "", false
		if m.shared != nil && c.By != "hold" {
			why, ok = m.shared(e.Prefix)
		}
		if !ok {
			m.local++
			continue
		}
		m.queue = append(m.queue, m.alert(e.Prefix, c, why, now))
		added++
	}
	m.seen = next
	if over := len(m.queue) - maxQueue; over > 0 {
		m.queue = m.queue[over:]
		m.dropped += over
	}
	if added > 0 {
		m.save()
	}
	return added
}

func (m *machine) alert(p netip.Prefix, c netcfg.Claim, proof string, now time.Time) Alert {
	sc := scenario(c.By)
	src := Source{Scope: "Ip", Value: p.Addr().String(), IP: p.Addr().String()}
	if !p.IsSingleIP() {
		src = Source{Scope: "Range", Value: p.String(), Range: p.String()}
	}
	dur := 4 * time.Hour // a permanent block at the box is the fleet's default ban
	if !c.Permanent() {
		dur = c.Until.Sub(now).Round(time.Second)
	}
	ts := c.Since.UTC().Format(time.RFC3339)
	return Alert{
		Scenario: sc, Message: fmt.Sprintf("%s at office %s: %s", src.Value, m.site, c.Reason),
		EventsCount: 1, StartAt: ts, StopAt: now.UTC().Format(time.RFC3339), Leakspeed: "0s",
		Remediation: true, Source: src,
		Events: []Event{{Timestamp: ts, Meta: []Meta{
			{Key: "site", Value: m.site}, {Key: "detector", Value: c.By}, {Key: "reason", Value: c.Reason}, {Key: "proof", Value: proof}}}},
		// The box's own block length (it escalates for repeat offenders) is the fleet's.
		Decisions: []Verdict{{Duration: dur.String(), Origin: "crowdsec", Scenario: sc, Scope: src.Scope, Type: "ban", Value: src.Value}},
	}
}

// sent drops the first n alerts, delivered.
func (m *machine) sent(n int) {
	m.queue = m.queue[n:]
	m.save()
}

// save writes the queue crash-safe; a failure keeps it in memory, and the status says so.
func (m *machine) save() {
	if m.path == "" {
		return
	}
	data, err := json.Marshal(m.queue)
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(m.path), 0o700); err == nil {
			err = store.WriteFile(m.path, data, 0o600)
		}
	}
	m.saveErr = err
}
