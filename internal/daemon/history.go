package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/history"
	"github.com/officeedge/appliance/wan"
)

// flushEvery is how often the history and the data use are written: rarely, as each write
// wears the SD card; a power cut loses at most this much of the charts.
const flushEvery = 10 * time.Minute

// keyHistoryFile is raised when a history or data-use file could not be read (it starts
// empty); keyBudget, followed by "." and the role, while an uplink's data budget is 80 % used.
const (
	keyHistoryFile = "history.file"
	keyBudget      = "wan.budget"
)

// markKinds are the wan events drawn on the charts.
var markKinds = map[string]bool{"wan.failover": true, "wan.failback": true, "wan.switch": true,
	"wan.override": true, "wan.both_down": true, "wan.online": true}

// historyPart samples the uplinks, the probe targets, sipguard and the blocklist into the
// history store, and counts each capped uplink's data against its budget.
type historyPart struct {
	app   *App
	store *history.Store
	boot  string // the kernel's boot id: a new one means every counter restarted

	mu     sync.Mutex
	meters map[string]*history.Meter // by role
	raised map[string]string         // the budget alert's level raised, by role
	usage  []history.UplinkUsage
	last   map[string]linkReading // by role, for rates
	guard  [2]uint64              // sipguard findings and blocks at the last sample
	guardT time.Time
}

type linkReading struct {
	index  int
	rx, tx uint64
	t      time.Time
}

func newHistoryPart(app *App) (*historyPart, error) {
	if app.StateDir == "" {
		return nil, nil
	}
	p := &historyPart{app: app, meters: map[string]*history.Meter{}, raised: map[string]string{}, last: map[string]linkReading{}}
	st, err := history.Open(filepath.Join(app.StateDir, "history"), app.Log, p.unreadable)
	if err != nil {
		return nil, err
	}
	p.store = st
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		p.boot = strings.TrimSpace(string(b))
	}
	return p, nil
}

func (p *historyPart) unreadable(file string, err error) {
	p.app.Alerts.Raise(keyHistoryFile, "history", fmt.Sprintf("%s could not be read and was started empty: %v", file, err))
}

func (p *historyPart) Run(ctx context.Context) error {
	evs, unsub := p.app.Bus.Subscribe(64)
	defer unsub()
	tick := time.NewTicker(history.Step)
	defer tick.Stop()
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	defer p.flush()
	p.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-evs:
			if markKinds[e.Kind] {
				p.store.Mark(history.Mark{T: e.Time, Kind: e.Kind, Message: e.Message})
			}
		case now := <-tick.C:
			p.sample(now)
		case <-flush.C:
			p.flush()
		}
	}
}

// flush writes the store and the meters; a failure is logged and tried again next time
// (the figures stay in memory).
func (p *historyPart) flush() {
	if err := p.store.Flush(); err != nil {
		p.app.Log.Error("history not written", "err", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for role, m := range p.meters {
		if err := m.Save(); err != nil {
			p.app.Log.Error("data use not written", "uplink", role, "err", err)
		}
	}
}

// Usage is each capped uplink's data use, as of the last sample.
func (p *historyPart) Usage() []history.UplinkUsage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]history.UplinkUsage{}, p.usage...)
}

func (p *historyPart) sample(now time.Time) {
	cfg := p.app.Config()
	if p.app.WAN != nil {
		for _, u := range p.app.WAN.Status().Uplinks {
			addFigures(p.store, now, u)
		}
	}
	var usage []history.UplinkUsage
	for _, u := range cfg.Uplink.All() {
		c := p.readLink(now, u)
		if u.DataBudget > 0 {
			usage = append(usage, p.count(now, u, c))
		}
	}
	p.mu.Lock()
	p.usage = usage
	p.mu.Unlock()
	if st, _, ok := guardStats(p.app); ok {
		if !p.guardT.IsZero() && st.Findings >= p.guard[0] && st.Blocks >= p.guard[1] {
			min := now.Sub(p.guardT).Minutes()
			p.store.Add("sipguard/findings_per_min", now, float64(st.Findings-p.guard[0])/min)
			p.store.Add("sipguard/blocks_per_min", now, float64(st.Blocks-p.guard[1])/min)
		}
		p.guard, p.guardT = [2]uint64{st.Findings, st.Blocks}, now
	}
	p.store.Add("blocklist/entries", now, float64(len(p.app.Owner.State().Entries)))
}

// addFigures records an uplink's round trip and loss, and each probed target's.
func addFigures(s *history.Store, now time.Time, u wan.UplinkStatus) {
	var best, loss float64
	n := 0
	for _, t := range u.Targets {
		if t.Sent == 0 {
			continue
		}
		pre := "target/" + string(u.Role) + "/" + t.Target + "/"
		if r := float64(t.RTT) / float64(time.Millisecond); r > 0 {
			s.Add(pre+"rtt_ms", now, r)
			if best == 0 || r < best {
				best = r
			}
		}
		s.Add(pre+"loss_pct", now, float64(t.LossPct))
		loss += float64(t.LossPct)
		n++
	}
	if n == 0 {
		return
	}
	if best > 0 {
		s.Add("uplink/"+string(u.Role)+"/rtt_ms", now, best)
	}
	s.Add("uplink/"+string(u.Role)+"/loss_pct", now, loss/float64(n))
}

// readLink reads an uplink's byte counters from the kernel and records its rates; nil
// when its interface is absent (a pulled modem is a gap in the charts, nothing more).
func (p *historyPart) readLink(now time.Time, u *config.Uplink) *history.Counter {
	l, err := netlink.LinkByName(u.Interface)
	if err != nil || l.Attrs().Statistics == nil {
		delete(p.last, u.Role)
		return nil
	}
	a := l.Attrs()
	cur := linkReading{index: a.Index, rx: a.Statistics.RxBytes, tx: a.Statistics.TxBytes, t: now}
	if prev, ok := p.last[u.Role]; ok && prev.index == cur.index && cur.rx >= prev.rx && cur.tx >= prev.tx {
		sec := now.Sub(prev.t).Seconds()
		if sec > 0 {
			p.store.Add("uplink/"+u.Role+"/rx_Bps", now, float64(cur.rx-prev.rx)/sec)
			p.store.Add("uplink/"+u.Role+"/tx_Bps", now, float64(cur.tx-prev.tx)/sec)
		}
	}
	p.last[u.Role] = cur
	return &history.Counter{Boot: p.boot, IfIndex: a.Index, Bytes: cur.rx + cur.tx}
}

// count adds a reading to the uplink's meter and tells people at 80 % and 100 % of its
// budget, once each per period; the alert clears when a new period starts.
func (p *historyPart) count(now time.Time, u *config.Uplink, c *history.Counter) history.UplinkUsage {
	p.mu.Lock()
	m := p.meters[u.Role]
	if m == nil {
		var err error
		path := filepath.Join(p.app.StateDir, "budget-"+u.Role+".json")
		if m, err = history.OpenMeter(path); err != nil {
			p.unreadable(path, err)
		}
		p.meters[u.Role] = m
	}
	p.mu.Unlock()
	use := m.Count(now, c, int64(u.DataBudget), u.BillingDay, p.app.Config().Location())
	uu := history.UplinkUsage{Role: u.Role, Name: u.Name, Interface: u.Interface, Usage: use, Level: use.Level()}
	key := keyBudget + "." + u.Role
	msg := fmt.Sprintf("%s (%s) has used %s of its %s data budget (%.0f %%) since %s; at this rate %s by %s",
		u.Name, u.Role, config.Bytes(use.Used), config.Bytes(use.Budget), use.Percent(), use.PeriodStart.Format(time.DateOnly),
		config.Bytes(use.Projected), use.PeriodEnd.Format(time.DateOnly))
	// Raised on a change of level only: raising it at every sample would undo an acknowledgement.
	if uu.Level != p.raised[u.Role] {
		if uu.Level == "" {
			p.app.Alerts.Clear(key)
		} else {
			p.app.Alerts.Raise(key, "history", msg)
		}
		p.raised[u.Role] = uu.Level
	}
	if uu.Level != m.Told() {
		if uu.Level != "" {
			sev := map[string]events.Severity{"warning": events.Warn, "critical": events.Alert}[uu.Level]
			p.app.Bus.Publish(events.Event{Time: now, Kind: keyBudget, Severity: sev, Source: "history", Message: msg,
				Fields: map[string]string{"uplink": u.Name, "role": u.Role, "level": uu.Level}})
		}
		m.SetTold(uu.Level)
	}
	return uu
}

func historyStore(app *App) *history.Store {
	if app.History == nil {
		return nil
	}
	return app.History.store
}

func budgetUsage(app *App) []history.UplinkUsage {
	if app.History == nil {
		return nil
	}
	return app.History.Usage()
}
