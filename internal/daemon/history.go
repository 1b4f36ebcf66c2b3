package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/officeedge/appliance/internal/history"
	"github.com/officeedge/appliance/wan"
)

// flushEvery is how often the history and the data use are written: rarely, as each write
// wears the SD card; a power cut loses at most this much of the charts.
const flushEvery = 10 * time.Minute

// keyHistoryFile is raised when a history or data-use file could not be read (it starts
// empty).
const keyHistoryFile = "history.file"

// markKinds are the wan events drawn on the charts.
var markKinds = map[string]bool{"wan.failover": true, "wan.failback": true, "wan.switch": true,
	"wan.override": true, "wan.both_down": true, "wan.online": true}

// historyPart samples the uplinks, the probe targets, sipguard and the blocklist into the
// history store; history.Uplinks counts each capped uplink's data against its budget.
type historyPart struct {
	app    *App
	store  *history.Store
	links  *history.Uplinks
	guard  [2]uint64 // sipguard findings and blocks at the last sample
	guardT time.Time
}

func newHistoryPart(app *App) (*historyPart, error) {
	if app.StateDir == "" {
		return nil, nil
	}
	p := &historyPart{app: app}
	st, err := history.Open(filepath.Join(app.StateDir, "history"), app.Log, p.unreadable)
	if err != nil {
		return nil, err
	}
	p.store = st
	p.links = history.NewUplinks(history.UplinksOptions{Store: st, Dir: app.StateDir, Alerts: app.Alerts, Bus: app.Bus,
		Log: app.Log, Unreadable: p.unreadable})
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
	p.links.Save()
}

// Usage is each capped uplink's data use, as of the last sample.
func (p *historyPart) Usage() []history.UplinkUsage { return p.links.Usage() }

func (p *historyPart) sample(now time.Time) {
	cfg := p.app.Config()
	if p.app.WAN != nil {
		for _, u := range p.app.WAN.Status().Uplinks {
			addFigures(p.store, now, u)
		}
	}
	p.links.Sample(now, cfg.Uplink.All(), cfg.Location())
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
