package daemon

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/officeedge/appliance/internal/calls"
	"github.com/officeedge/appliance/internal/config"
)

// PathCallsStatus is the control API's call-quality route (`appliance calls`): GET, calls.Status.
const PathCallsStatus = "/calls/status"

// callsSpec is the call-quality part: each call's SIP and RTP followed on the LAN.
func callsSpec() partSpec {
	return partSpec{name: "calls", make: func(a *App) (runner, error) { return orNil(newCallsPart(a)) }, startKey: callsStartKey}
}

// callsPart runs the capture and the call table.
type callsPart struct{ s *calls.Service }

// newCallsPart makes the part, or nil when [voice.calls] is off.
func newCallsPart(a *App) (*callsPart, error) {
	c := a.Config()
	dir := ""
	if a.StateDir != "" {
		dir = filepath.Join(a.StateDir, "calls")
	}
	s, err := calls.New(calls.Options{Config: c, Alerts: a.Alerts, Line: func() string { return activeLine(a) }, StateDir: dir, Log: a.Log})
	if err != nil || s == nil {
		a.Calls.Store(nil)
		return nil, err
	}
	a.Calls.Store(s)
	return &callsPart{s: s}, nil
}

func (p *callsPart) Run(ctx context.Context) error { return p.s.Run(ctx) }

// callsStartKey: every setting is read at start (a change restarts the part; the last
// day's calls are saved and read back).
func callsStartKey(c *config.Config) string {
	return fmt.Sprint(c.Voice.Calls, c.LAN.Interface, c.PBX.Address, c.PBX.Address6, c.PBX.SIPPort, c.PBX.RTPPorts)
}

// activeLine is the name of the uplink carrying traffic now ("" when wan is off).
func activeLine(a *App) string {
	if a.WAN == nil {
		return ""
	}
	st := a.WAN.Status()
	for _, u := range st.Uplinks {
		if u.Role == st.Active {
			return u.Name
		}
	}
	return ""
}

// callsStatus is the part's status for the page and /metrics; false when off.
func callsStatus(a *App) (calls.Status, bool) {
	if s := a.Calls.Load(); s != nil {
		return s.Status(), true
	}
	return calls.Status{}, false
}

// callsRoutes are the control API's call-quality routes.
func (a *App) callsRoutes() {
	a.Control.HandleFunc("GET "+PathCallsStatus, func(w http.ResponseWriter, r *http.Request) {
		st, ok := callsStatus(a)
		if !ok {
			writeJSON(w, calls.Status{Enabled: false, Active: []calls.Call{}, Recent: []calls.Call{}})
			return
		}
		writeJSON(w, st)
	})
}
