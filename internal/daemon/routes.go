package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// routes registers the control API once; each route reaches the part in force when it is
// called (a part restarted by a reload is a new object).
func (a *App) routes() {
	m := a.Control
	m.HandleFunc("GET /wan/status", func(w http.ResponseWriter, r *http.Request) {
		if a.WAN == nil {
			http.Error(w, "wan is off", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, a.WAN.Status())
	})
	m.HandleFunc("POST /wan/force", a.wanForce)
	m.HandleFunc("GET /sipguard/blocked", a.withGuard((*sipGuardService).blocked))
	m.HandleFunc("GET /sipguard/status", a.withGuard((*sipGuardService).status))
	m.HandleFunc("GET /blocklist", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, blocklistView{State: a.Owner.State(), Packets: packetsByText(a.Owner.Packets())})
	})
	m.HandleFunc("POST /blocklist/block", a.block)
	m.HandleFunc("POST /blocklist/unblock", a.unblock)
	m.HandleFunc("GET /alerts", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Alerts.List()) })
	m.HandleFunc("POST /hal/button", func(w http.ResponseWriter, r *http.Request) {
		h := a.HAL.Load()
		if h == nil {
			http.Error(w, "the LEDs and button part is off", http.StatusServiceUnavailable)
			return
		}
		h.controlPress(w, r)
	})
	m.HandleFunc("GET /hal/leds", func(w http.ResponseWriter, r *http.Request) {
		h := a.HAL.Load()
		if h == nil {
			http.Error(w, "the LEDs and button part is off", http.StatusServiceUnavailable)
			return
		}
		h.leds(w, r)
	})
	m.HandleFunc("GET /audit/export", a.auditExport)
	m.HandleFunc("POST /audit/record", a.auditRecord)
	m.HandleFunc("POST /notify/test", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Mail.Test(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = w.Write([]byte("test email sent\n"))
	})
	m.HandleFunc("GET /crowdsec/status", a.crowdSecStatus)
	m.HandleFunc("GET /peers/status", a.peersStatus)
	m.HandleFunc("GET /kernel-features", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Kernel) })
	m.HandleFunc("POST /vpn/rotate", a.vpnRotate)
	a.backupRoutes()
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

func (a *App) wanForce(w http.ResponseWriter, r *http.Request) {
	if a.WAN == nil {
		http.Error(w, "wan is off", http.StatusServiceUnavailable)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m, err := wan.ParseMode(strings.TrimSpace(string(b)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	before := string(a.WAN.Status().Mode)
	if err := a.WAN.Force(r.Context(), m); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	a.audit(r, "uplink.force", before, string(m))
	writeJSON(w, a.WAN.Status())
}

// BlockRequest is the control API's block request (the CLI's).
type BlockRequest struct {
	Prefix string        `json:"prefix"`
	For    time.Duration `json:"for"`
	Force  bool          `json:"force"`
	By     string        `json:"by"`
	Reason string        `json:"reason"`
}

// blocklistView is GET /blocklist: the owner's state and the drop counters by prefix.
type blocklistView struct {
	State   *netcfg.BlockState `json:"state"`
	Packets map[string]uint64  `json:"packets"`
}

func packetsByText(m map[netip.Prefix]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for p, n := range m {
		out[p.String()] = n
	}
	return out
}

func (a *App) block(w http.ResponseWriter, r *http.Request) {
	var req BlockRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, "bad block request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var p config.Prefix
	if err := p.UnmarshalText([]byte(req.Prefix)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reason := req.Reason
	if reason == "" {
		reason = "blocked by hand"
	}
	who := req.By
	if who == "" {
		who = "root"
	}
	e, err := a.Owner.Block(netcfg.BlockRequest{Prefix: p.Prefix, Source: netcfg.SourceManual, By: who + " (cli)", Reason: reason, For: req.For, Force: req.Force})
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, netcfg.ErrProtected) || errors.Is(err, netcfg.ErrTooWide) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	after := p.Prefix.String() + " until unblocked"
	if req.For > 0 {
		after = p.Prefix.String() + " for " + req.For.String()
	}
	a.auditAs(who, "block", "", after+": "+reason)
	writeJSON(w, e)
}

func (a *App) unblock(w http.ResponseWriter, r *http.Request) {
	var p config.Prefix
	if err := p.UnmarshalText([]byte(r.URL.Query().Get("addr"))); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	who := r.URL.Query().Get("who")
	if who == "" {
		who = "root"
	}
	if _, err := a.Owner.Unblock(p.Prefix, who+" (cli)"); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	a.auditAs(who, "unblock", p.Prefix.String(), "")
	fmt.Fprintf(w, "unblocked %s\n", p.Prefix)
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
