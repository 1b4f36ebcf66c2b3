package daemon

import (
	"encoding/json"
	"net/http"

	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/wan"
)

// routes registers the control API once; each route reaches the part in force when it is
// called (a part restarted by a reload is a new object).
func (a *App) routes() {
	m := a.Control
	m.HandleFunc("GET "+control.PathWANStatus, func(w http.ResponseWriter, r *http.Request) {
		if a.WAN == nil {
			http.Error(w, "wan is off", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, a.WAN.Status())
	})
	m.HandleFunc("POST "+control.PathWANForce, a.wanForce)
	m.HandleFunc("GET "+control.PathSIPGuardBlocks, a.withGuard((*sipGuardService).blocked))
	m.HandleFunc("GET "+control.PathSIPGuardStatus, a.withGuard((*sipGuardService).status))
	m.HandleFunc("GET "+control.PathBlocklist, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, control.NewBlocklistView(a.Owner.State(), a.Owner.Packets()))
	})
	m.HandleFunc("POST "+control.PathBlock, a.block)
	m.HandleFunc("POST "+control.PathUnblock, a.unblock)
	m.HandleFunc("GET "+control.PathAlerts, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Alerts.List()) })
	m.HandleFunc("POST "+control.PathAlertsAck, a.acknowledge)
	m.HandleFunc("POST "+control.PathButton, a.press)
	m.HandleFunc("GET "+control.PathLEDs, func(w http.ResponseWriter, r *http.Request) {
		h := a.HAL.Load()
		if h == nil {
			http.Error(w, "the LEDs and button part is off", http.StatusServiceUnavailable)
			return
		}
		h.leds(w, r)
	})
	m.HandleFunc("GET "+control.PathAuditExport, a.auditExport)
	m.HandleFunc("POST "+control.PathAuditRecord, a.auditRecord)
	m.HandleFunc("POST "+control.PathNotifyTest, func(w http.ResponseWriter, r *http.Request) {
		if err := a.Mail.Test(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = w.Write([]byte("test email sent\n"))
	})
	m.HandleFunc("GET "+control.PathCrowdSecStatus, a.crowdSecStatus)
	m.HandleFunc("GET "+control.PathPeersStatus, a.peersStatus)
	m.HandleFunc("GET "+control.PathKernelFeatures, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Kernel) })
	m.HandleFunc("POST "+control.PathVPNRotate, a.vpnRotate)
	m.HandleFunc("GET "+control.PathRelayStatus, a.relayStatus) // relay.go
	a.backupRoutes()
	a.callsRoutes() // calls.go
	a.voiceMoveRoutes()
	a.shaperRoutes() // shaper.go
}

// withGuard serves a sipguard route, or says sipguard is off.
func (a *App) withGuard(h func(*sipGuardService, http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g := a.guard()
		if g == nil {
			http.Error(w, "sipguard is off ([sipguard] enabled = false)", http.StatusServiceUnavailable)
			return
		}
		h(g, w, r)
	}
}

// The control socket's doors to the actions (control.Actions): the CLI's requests, named
// for the console user they carry.

// readRequest decodes a JSON request of at most 4 KiB into v, answering 400 itself when it
// cannot; ok is false then.
func readRequest(w http.ResponseWriter, r *http.Request, what string, v any) (ok bool) {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(v); err != nil {
		http.Error(w, "bad "+what+" request: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// actionError answers an action's error with its status (control.StatusCode).
func actionError(w http.ResponseWriter, err error, fallback int) {
	http.Error(w, err.Error(), control.StatusCode(err, fallback))
}

// wanForce serves POST /wan/force: a control.ForceRequest.
func (a *App) wanForce(w http.ResponseWriter, r *http.Request) {
	var req control.ForceRequest
	if !readRequest(w, r, "force", &req) {
		return
	}
	m, err := wan.ParseMode(string(req.Mode))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	x := a.actions()
	if err := x.ForceUplink(r.Context(), control.Console(req.By), m); err != nil {
		actionError(w, err, http.StatusServiceUnavailable)
		return
	}
	st, _ := x.WAN()
	writeJSON(w, st)
}

func (a *App) block(w http.ResponseWriter, r *http.Request) {
	var req control.BlockRequest
	if !readRequest(w, r, "block", &req) {
		return
	}
	e, err := a.actions().Block(control.Console(req.By), req)
	if err != nil {
		actionError(w, err, http.StatusInternalServerError)
		return
	}
	writeJSON(w, e)
}

func (a *App) unblock(w http.ResponseWriter, r *http.Request) {
	var req control.UnblockRequest
	if !readRequest(w, r, "unblock", &req) {
		return
	}
	e, err := a.actions().Unblock(control.Console(req.By), req)
	if err != nil {
		actionError(w, err, http.StatusConflict)
		return
	}
	writeJSON(w, e)
}

func (a *App) acknowledge(w http.ResponseWriter, r *http.Request) {
	var req control.AckRequest
	if !readRequest(w, r, "acknowledge", &req) {
		return
	}
	n, err := a.actions().Acknowledge(control.Console(req.By))
	if err != nil {
		actionError(w, err, http.StatusInternalServerError)
		return
	}
	writeJSON(w, control.AckAnswer{Acknowledged: n})
}

// press serves `appliance button press [--long]`: it answers when the press is over.
func (a *App) press(w http.ResponseWriter, r *http.Request) {
	var req control.ButtonRequest
	if !readRequest(w, r, "button", &req) {
		return
	}
	done, err := a.actions().PressButton(control.Console(req.By), req.Long)
	if err == nil {
		select {
		case err = <-done:
		case <-r.Context().Done():
			err = r.Context().Err()
		}
	}
	if err != nil {
		actionError(w, err, http.StatusConflict)
		return
	}
	writeJSON(w, control.ButtonAnswer{Pressed: control.PressName(req.Long)})
}

// audit records a change made through the control API (the CLI: root on the box).
func (a *App) audit(r *http.Request, what, before, after string) {
	who := r.URL.Query().Get("who")
	if who == "" {
		who = "root"
	}
	a.auditAs(who, what, before, after)
}

func (a *App) auditAs(who, what, before, after string) {
	if err := a.Audit.Record(audit.Entry{Who: who, From: "console", Via: "cli", What: what, Before: before, After: after}); err != nil {
		a.Log.Error("audit", "err", err)
	}
}
