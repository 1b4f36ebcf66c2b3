package web

// The page's doors to the actions (control.Actions, shared with the control socket and the
// button): force an uplink, block, unblock, acknowledge the alerts, press the button. Each
// door reads the page's request and answers it; the action audits and publishes.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// Actions are what a person does from the page: *control.Actions, the one implementation
// the control socket and the button call too.
type Actions interface {
	ForceUplink(ctx context.Context, a control.Actor, m wan.Mode) error
	Block(a control.Actor, r control.BlockRequest) (netcfg.Entry, error)
	Unblock(a control.Actor, r control.UnblockRequest) (netcfg.Entry, error)
	Acknowledge(a control.Actor) (int, error)
	PressButton(a control.Actor, long bool) (<-chan error, error)
}

// ErrNoButton means the board's button cannot be pressed from the page (a real one is).
var ErrNoButton = control.ErrNoButton

// partsActions are the actions on the options' own parts, for a page made without Actions:
// the alerts, the blocklist (when it can be changed) and the board; no uplink can be forced.
func partsActions(o Options) *control.Actions {
	x := &control.Actions{Alerts: o.Alerts, Audit: o.Audit, Bus: o.Bus, Log: o.Log}
	if bl, ok := o.Blocklist.(control.Blocklist); ok {
		x.Blocklist = bl
	}
	if o.Board != nil {
		x.Press = o.Board.Press
	}
	return x
}

// page is the actor of a request from the page.
func (a actor) page() control.Actor { return control.Actor{Who: a.who, From: a.from, Via: "web"} }

func (s *Server) handleForce(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Mode string `json:"mode"`
	}
	if err := readJSON(r, &req); err != nil {
		httpError(w, 400, err.Error())
		return
	}
	m, err := wan.ParseMode(req.Mode)
	if err != nil {
		httpError(w, 400, "mode must be backup, primary or auto")
		return
	}
	if err := s.o.Actions.ForceUplink(r.Context(), a.page(), m); err != nil {
		httpError(w, control.StatusCode(err, http.StatusServiceUnavailable), err.Error())
		return
	}
	writeJSON(w, 200, map[string]string{"mode": string(m)})
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p config.Prefix
	if err := p.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return netip.Prefix{}, err
	}
	return p.Prefix.Masked(), nil
}

// readAddrRequest decodes a JSON request into req and parses the address or network it put
// in *addr, answering 400 itself when it cannot; ok is false then.
func readAddrRequest(w http.ResponseWriter, r *http.Request, req any, addr *string) (p netip.Prefix, ok bool) {
	if err := readJSON(r, req); err != nil {
		httpError(w, 400, err.Error())
		return p, false
	}
	p, err := parsePrefix(*addr)
	if err != nil {
		httpError(w, 400, err.Error())
		return p, false
	}
	return p, true
}

// blocklistError answers a refused or failed change of the blocklist with the owner's own
// words, which name the prefix: a refusal names the rule that protects the address, or the
// widest network allowed. Other errors get code (see control.StatusCode).
func blocklistError(w http.ResponseWriter, what string, err error, code int) {
	code = control.StatusCode(err, code)
	if errors.Is(err, netcfg.ErrOwnerStopped) {
		httpError(w, code, what+": "+err.Error())
		return
	}
	httpError(w, code, err.Error())
}

// by names who changed something, as the owner and the config history record it.
func (a actor) by() string { return a.page().By() }

func (s *Server) handleBlock(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Addr   string `json:"addr"`
		For    string `json:"for"`
		Reason string `json:"reason"`
	}
	p, ok := readAddrRequest(w, r, &req, &req.Addr)
	if !ok {
		return
	}
	var d time.Duration
	if req.For = strings.TrimSpace(req.For); req.For != "" {
		var err error
		if d, err = time.ParseDuration(req.For); err != nil || d < time.Millisecond {
			httpError(w, 400, fmt.Sprintf("%q is not a duration like 30m or 24h", req.For))
			return
		}
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		reason = "blocked on the status page"
	}
	e, err := s.o.Actions.Block(a.page(), control.BlockRequest{Prefix: config.Prefix{Prefix: p}, For: d, Reason: reason})
	if err != nil {
		blocklistError(w, "block "+canonical(p), err, http.StatusInternalServerError)
		return
	}
	writeJSON(w, 200, map[string]string{"blocked": canonical(e.Prefix), "for": forText(d)})
}

func forText(d time.Duration) string {
	if d == 0 {
		return "ever"
	}
	return d.String()
}

func (s *Server) handleUnblock(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Addr string `json:"addr"`
	}
	p, ok := readAddrRequest(w, r, &req, &req.Addr)
	if !ok {
		return
	}
	if _, err := s.o.Actions.Unblock(a.page(), control.UnblockRequest{Prefix: config.Prefix{Prefix: p}}); err != nil {
		blocklistError(w, "unblock "+canonical(p), err, http.StatusConflict)
		return
	}
	writeJSON(w, 200, map[string]string{"unblocked": canonical(p)})
}

// handleAck acknowledges every alert, as a long press of the button does.
func (s *Server) handleAck(w http.ResponseWriter, r *http.Request, a actor) {
	n, err := s.o.Actions.Acknowledge(a.page())
	if err != nil {
		httpError(w, control.StatusCode(err, http.StatusInternalServerError), err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"acknowledged": n})
}

func (s *Server) handleButton(w http.ResponseWriter, r *http.Request, a actor) {
	var req struct {
		Long bool `json:"long"`
	}
	if err := readJSON(r, &req); err != nil {
		httpError(w, 400, err.Error())
		return
	}
	// A long press holds the button for seconds: answer now, the result arrives as events.
	if _, err := s.o.Actions.PressButton(a.page(), req.Long); err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"pressed": control.PressName(req.Long)})
}
