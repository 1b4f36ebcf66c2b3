package wan

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/events"
)

// Status is what `appliance wan status` and the status page show.
type Status struct {
	Active     Role           `json:"active"`
	Mode       Mode           `json:"mode"`
	BothDown   bool           `json:"both_down"`
	HoldDown   time.Duration  `json:"hold_down_ns"`
	Flaps      int            `json:"flaps"`
	FailbackAt time.Time      `json:"failback_at,omitzero"`
	Uplinks    []UplinkStatus `json:"uplinks"`
	Trunks     []TrunkStatus  `json:"trunks"`
	// Registration is the PBX's registration as its REGISTERs leaving through the uplinks
	// show it (nil until one is seen): how long inbound calls may miss the office after a
	// failover.
	Registration *Registration  `json:"registration,omitempty"`
	Events       []events.Event `json:"events"`
}

// UplinkStatus is one uplink's health and probe figures.
type UplinkStatus struct {
	Role      Role      `json:"role"`
	Name      string    `json:"name"`
	Interface string    `json:"interface"`
	Address   string    `json:"address"`
	Gateway   string    `json:"gateway"`
	Carrier   bool      `json:"carrier"`
	State     State     `json:"state"`
	Since     time.Time `json:"since"`
	Reason    string    `json:"reason"`
	Probing   string    `json:"probing"` // fast or standby
	// DNS servers the line's DHCP lease named (option 6); empty for static uplinks.
	DNS     []netip.Addr  `json:"dns"`
	Targets []TargetStats `json:"targets"`
	// Confirming: a silence is being checked with a burst; Suspicions counts silences that
	// turned out to be a working line.
	Confirming bool `json:"confirming"`
	Suspicions int  `json:"suspicions"`
	// Expected probe data per 30-day month, at the standby rate and at the full rate.
	StandbyMBMonth float64 `json:"standby_mb_month"`
	FullMBMonth    float64 `json:"full_mb_month"`
}

// Status returns the current state of both uplinks, the site and the trunks.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Active: s.site.Active, Mode: s.site.Mode, BothDown: s.site.BothDown, HoldDown: s.site.HoldDown,
		Flaps: s.site.Flaps, FailbackAt: s.site.FailbackAt()}
	if s.site.Active == Primary {
		st.FailbackAt = time.Time{}
	}
	for _, r := range []Role{Primary, Backup} {
		u := s.ups[r]
		if u == nil {
			continue
		}
		state, since, reason := u.health.State()
		us := UplinkStatus{Role: r, Name: u.cfg.Name, Interface: u.cfg.Interface, Carrier: u.carrier,
			State: state, Since: since, Reason: reason, Probing: "standby", Targets: u.health.Stats(),
			DNS: append([]netip.Addr{}, u.dns...), Confirming: u.confirming, Suspicions: u.suspicions,
			StandbyMBMonth: mb(MonthlyBytes(u.targets, s.cfg.StandbyInterval)),
			FullMBMonth:    mb(MonthlyBytes(u.targets, s.cfg.Interval))}
		if u.fast {
			us.Probing = "fast"
		}
		if u.addr.IsValid() {
			us.Address = u.addr.String()
		}
		if u.gw.gw4.IsValid() {
			us.Gateway = u.gw.gw4.String()
		}
		st.Uplinks = append(st.Uplinks, us)
	}
	for _, t := range s.trunks {
		st.Trunks = append(st.Trunks, t.st)
	}
	if s.reg != nil {
		r := *s.reg
		st.Registration = &r
	}
	st.Events = append(st.Events, s.history...)
	return st
}

func mb(b int64) float64 { return float64(b*10/1_000_000) / 10 }

// WriteText prints a status for people.
func (st Status) WriteText(w io.Writer) {
	active := string(st.Active)
	for _, u := range st.Uplinks {
		if u.Role == st.Active {
			active = fmt.Sprintf("%s (%s)", u.Name, u.Role)
		}
	}
	fmt.Fprintf(w, "active uplink: %s, mode %s", active, st.Mode)
	if st.BothDown {
		fmt.Fprint(w, ", BOTH UPLINKS DOWN (still probing)")
	}
	fmt.Fprintf(w, "\nfailback stability: %s (flaps: %d)", st.HoldDown, st.Flaps)
	if !st.FailbackAt.IsZero() {
		fmt.Fprintf(w, ", failback in %s", time.Until(st.FailbackAt).Round(100*time.Millisecond))
	}
	fmt.Fprintln(w)
	for _, u := range st.Uplinks {
		fmt.Fprintf(w, "\n%s %s on %s (%s via %s): %s for %s: %s\n", u.Role, u.Name, u.Interface, orDash(u.Address), orDash(u.Gateway),
			strings.ToUpper(string(u.State)), time.Since(u.Since).Round(time.Second), u.Reason)
		fmt.Fprintf(w, "  carrier %v, probing %s; probe data %.1f MB/month on standby, %.1f MB/month at full rate\n",
			u.Carrier, u.Probing, u.StandbyMBMonth, u.FullMBMonth)
		for _, t := range u.Targets {
			fmt.Fprintf(w, "  %-24s loss %3d%% (%d/%d)  rtt %-10s lost in a row %d\n", t.Target, t.LossPct, t.Lost, t.Sent,
				t.RTT.Round(10*time.Microsecond), t.ConsecLost)
			if t.LastError != "" {
				fmt.Fprintf(w, "  %-24s last lost: %s\n", "", t.LastError)
			}
		}
	}
	if len(st.Trunks) > 0 {
		fmt.Fprintln(w, "\nSIP trunks (OPTIONS through the active uplink):")
		for _, t := range st.Trunks {
			fmt.Fprintf(w, "  %-16s %-22s %-8s via %-8s rtt %s\n", t.Name, t.Target, strings.ToUpper(string(t.State)), orDash(t.Via), t.RTT.Round(10*time.Microsecond))
		}
	}
	if r := st.Registration; r != nil {
		fmt.Fprintf(w, "\nPBX registration: every %s or less, to %s via %s (seen %s ago)\n", r.Interval, r.Registrar, r.Via, time.Since(r.Seen).Round(time.Second))
		if r.Warning != "" {
			fmt.Fprintf(w, "  WARNING: %s\n", r.Warning)
		}
	}
	if n := len(st.Events); n > 0 {
		fmt.Fprintln(w, "\nrecent events:")
		for _, e := range st.Events[max(0, n-10):] {
			fmt.Fprintf(w, "  %s %-5s %s\n", e.Time.Format("15:04:05.000"), e.Severity, e.Message)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
