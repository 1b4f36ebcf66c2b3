package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/kernelfeat"
	"github.com/officeedge/appliance/internal/shaper"
)

// Control API routes of the shaper (`appliance wan speedtest NAME`).
const (
	PathShaperStatus = "/shaper/status"    // GET: []shaper.Status
	PathSpeedtest    = "/shaper/speedtest" // POST ?uplink=NAME: shaper.SpeedResult
)

// shaperSpec is the shaper part: each uplink with an upload rate shaped voice first.
func shaperSpec() partSpec {
	return partSpec{name: "shaper", make: func(a *App) (runner, error) { return orNil(newShaperPart(a)) },
		// On or off takes a start (or a stop: its trees go); rates and links reload in place.
		startKey: func(c *config.Config) string { return fmt.Sprint(len(shaper.LinksFrom(c)) > 0) }}
}

type shaperPart struct{ s *shaper.Shaper }

// newShaperPart makes the part, or nil when no uplink has an upload rate.
func newShaperPart(a *App) (*shaperPart, error) {
	links := shaper.LinksFrom(a.Config())
	if len(links) == 0 {
		a.Shaper.Store(nil)
		return nil, nil
	}
	s := shaper.New(shaper.Options{Links: links, FQCodel: kernelfeat.Has(a.Kernel, "qdisc fq_codel"),
		RTT: func(iface string) map[string]shaper.Sample { return probeRTTs(a, iface) }, Log: a.Log.With("part", "shaper")})
	a.Shaper.Store(s)
	return &shaperPart{s: s}, nil
}

func (p *shaperPart) Run(ctx context.Context) error { return p.s.Run(ctx) }

func (p *shaperPart) Reload(c *config.Config) error {
	p.s.Reload(shaper.LinksFrom(c))
	return nil
}

// probeRTTs are the last round trips of wan's probes through iface, per target, for
// autorate; targets silent for more than 3 s say nothing.
func probeRTTs(a *App, iface string) map[string]shaper.Sample {
	if a.WAN == nil {
		return nil
	}
	out := map[string]shaper.Sample{}
	for _, u := range a.WAN.Status().Uplinks {
		if u.Interface != iface {
			continue
		}
		for _, t := range u.Targets {
			if t.LastRTT > 0 && time.Since(t.LastOK) < 3*time.Second {
				out[t.Target] = shaper.Sample{RTT: t.LastRTT, At: t.LastOK}
			}
		}
	}
	return out
}

// shaperStatus is the shaper's state for the page; false when it is off.
func shaperStatus(a *App) ([]shaper.Status, bool) {
	if s := a.Shaper.Load(); s != nil {
		return s.Status(), true
	}
	return nil, false
}

// speedtests lets one speed test run at a time: two would halve each other's figures.
var speedtests sync.Mutex

func (a *App) shaperRoutes() {
	a.Control.HandleFunc("GET "+PathShaperStatus, func(w http.ResponseWriter, r *http.Request) {
		st, _ := shaperStatus(a)
		writeJSON(w, st)
	})
	a.Control.HandleFunc("POST "+PathSpeedtest, a.speedtest)
}

// speedtest is `appliance wan speedtest NAME`: the uplink named (its name, role or
// interface) measured against [voice] speedtest_url.
func (a *App) speedtest(w http.ResponseWriter, r *http.Request) {
	c := a.Config()
	name := r.URL.Query().Get("uplink")
	var u *config.Uplink
	for _, x := range c.Uplink.All() {
		if name == x.Name || name == x.Role || name == x.Interface {
			u = x
		}
	}
	if u == nil {
		http.Error(w, fmt.Sprintf("no uplink named %q (give its name, primary/backup or its interface)", name), http.StatusNotFound)
		return
	}
	if c.Voice.SpeedtestURL == "" {
		http.Error(w, "no speed test server: set [voice] speedtest_url", http.StatusServiceUnavailable)
		return
	}
	if !speedtests.TryLock() {
		http.Error(w, "a speed test is running already", http.StatusConflict)
		return
	}
	defer speedtests.Unlock()
	src := u.Address.Addr()
	if a.WAN != nil { // a DHCP uplink's address is wan's
		for _, us := range a.WAN.Status().Uplinks {
			if us.Interface == u.Interface {
				if ad, err := netip.ParseAddr(us.Address); err == nil {
					src = ad
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*c.Voice.SpeedtestDuration+30*time.Second)
	defer cancel()
	res, err := shaper.Speedtest(ctx, shaper.SpeedOptions{Uplink: u.Name, Interface: u.Interface, Source: src,
		URL: c.Voice.SpeedtestURL, Duration: c.Voice.SpeedtestDuration})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	a.audit(r, "wan.speedtest", u.Name, fmt.Sprintf("download %.1f Mbit/s, upload %.1f Mbit/s", res.Download/1e6, res.Upload/1e6))
	writeJSON(w, res)
}
