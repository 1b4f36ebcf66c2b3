package history

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// KeyBudget, followed by "." and the role, is the alert raised while an uplink's data budget
// is 80 % used; the events that tell people are of this kind.
const KeyBudget = "wan.budget"

// Alerter raises and clears the alerts people see (alerts.Store).
type Alerter interface {
	Raise(key, source, message string)
	Clear(key string)
}

// UplinksOptions say where the uplinks' figures go.
type UplinksOptions struct {
	Store *Store // the rates in and out
	// Dir holds each capped uplink's meter (budget-ROLE.json).
	Dir    string
	Alerts Alerter
	Bus    *events.Bus // the budget events (nil: none)
	Log    *slog.Logger
	// Unreadable hears of a meter file that could not be read (it starts empty).
	Unreadable func(file string, err error)
}

// Uplinks reads the uplinks' byte counters from the kernel into rates, and counts each
// capped uplink's data against its budget.
type Uplinks struct {
	o    UplinksOptions
	boot string // the kernel's boot id: a new one means every counter restarted

	mu     sync.Mutex
	meters map[string]*Meter      // by role
	raised map[string]string      // the budget alert's level raised, by role
	usage  []UplinkUsage          // as of the last sample
	last   map[string]linkReading // by role, for rates; Sample's alone
}

type linkReading struct {
	index  int
	rx, tx uint64
	t      time.Time
}

// NewUplinks makes the counters; nothing is read until Sample.
func NewUplinks(o UplinksOptions) *Uplinks {
	u := &Uplinks{o: o, meters: map[string]*Meter{}, raised: map[string]string{}, last: map[string]linkReading{}}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		u.boot = strings.TrimSpace(string(b))
	}
	return u
}

// Sample reads every uplink's counters and records its rates, and counts the capped ones.
func (p *Uplinks) Sample(now time.Time, ups []*config.Uplink, loc *time.Location) {
	var usage []UplinkUsage
	for _, u := range ups {
		c := p.readLink(now, u)
		if u.DataBudget > 0 {
			usage = append(usage, p.count(now, u, c, loc))
		}
	}
	p.mu.Lock()
	p.usage = usage
	p.mu.Unlock()
}

// Usage is each capped uplink's data use, as of the last sample.
func (p *Uplinks) Usage() []UplinkUsage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]UplinkUsage{}, p.usage...)
}

// Save writes the meters; a failure is logged and tried again next time (the figures stay
// in memory).
func (p *Uplinks) Save() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for role, m := range p.meters {
		if err := m.Save(); err != nil {
			p.o.Log.Error("data use not written", "uplink", role, "err", err)
		}
	}
}

// readLink reads an uplink's byte counters from the kernel and records its rates; nil
// when its interface is absent (a pulled modem is a gap in the charts, nothing more).
func (p *Uplinks) readLink(now time.Time, u *config.Uplink) *Counter {
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
			p.o.Store.Add("uplink/"+u.Role+"/rx_Bps", now, float64(cur.rx-prev.rx)/sec)
			p.o.Store.Add("uplink/"+u.Role+"/tx_Bps", now, float64(cur.tx-prev.tx)/sec)
		}
	}
	p.last[u.Role] = cur
	return &Counter{Boot: p.boot, IfIndex: a.Index, Bytes: cur.rx + cur.tx}
}

// count adds a reading to the uplink's meter and tells people at 80 % and 100 % of its
// budget, once each per period; the alert clears when a new period starts.
func (p *Uplinks) count(now time.Time, u *config.Uplink, c *Counter, loc *time.Location) UplinkUsage {
	p.mu.Lock()
	m := p.meters[u.Role]
	if m == nil {
		var err error
		path := filepath.Join(p.o.Dir, "budget-"+u.Role+".json")
		if m, err = OpenMeter(path); err != nil && p.o.Unreadable != nil {
			p.o.Unreadable(path, err)
		}
		p.meters[u.Role] = m
	}
	p.mu.Unlock()
	use := m.Count(now, c, int64(u.DataBudget), u.BillingDay, loc)
	uu := UplinkUsage{Role: u.Role, Name: u.Name, Interface: u.Interface, Usage: use, Level: use.Level()}
	key := KeyBudget + "." + u.Role
	msg := fmt.Sprintf("%s (%s) has used %s of its %s data budget (%.0f %%) since %s; at this rate %s by %s",
		u.Name, u.Role, config.Bytes(use.Used), config.Bytes(use.Budget), use.Percent(), use.PeriodStart.Format(time.DateOnly),
		config.Bytes(use.Projected), use.PeriodEnd.Format(time.DateOnly))
	// Raised on a change of level only: raising it at every sample would undo an acknowledgement.
	if uu.Level != p.raised[u.Role] {
		if uu.Level == "" {
			p.o.Alerts.Clear(key)
		} else {
			p.o.Alerts.Raise(key, "history", msg)
		}
		p.raised[u.Role] = uu.Level
	}
	if uu.Level != m.Told() {
		if uu.Level != "" && p.o.Bus != nil {
			sev := map[string]events.Severity{"warning": events.Warn, "critical": events.Alert}[uu.Level]
			p.o.Bus.Publish(events.Event{Time: now, Kind: KeyBudget, Severity: sev, Source: "history", Message: msg,
				Fields: map[string]string{"uplink": u.Name, "role": u.Role, "level": uu.Level}})
		}
		m.SetTold(uu.Level)
	}
	return uu
}
