package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/diag"
)

// diagLimits bound the diagnostics the page may run: a few at once, a few a minute, one
// capture at a time. Nobody logged in floods anything from the box.
type diagLimits struct {
	runs    chan struct{} // one slot per diagnostic running
	rate    *rate.Limiter
	capture sync.Mutex
}

func newDiagLimits() *diagLimits {
	return &diagLimits{runs: make(chan struct{}, 2), rate: rate.NewLimiter(rate.Every(3*time.Second), 5)}
}

// diagTrunk is a trunk the SIP OPTIONS may be sent to: [sip_peers.NAME] options.
type diagTrunk struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

type diagView struct {
	Uplinks    []diag.Uplink `json:"uplinks"`
	Trunks     []diagTrunk   `json:"trunks"`
	Interfaces []string      `json:"interfaces"`
	QTypes     []string      `json:"qtypes"`
	MaxCount   int           `json:"max_count"`
	MaxCapture float64       `json:"max_capture_s"`
}

func trunks(c *config.Config) []diagTrunk {
	out := []diagTrunk{}
	for _, n := range config.SortedNames(c.SIPPeers) {
		if t := c.SIPPeers[n].Options; t != "" {
			out = append(out, diagTrunk{Name: n, Target: t})
		}
	}
	return out
}

// captureInterfaces are the LAN's and the uplinks' interfaces.
func captureInterfaces(c *config.Config) []string {
	out := []string{c.LAN.Interface}
	for _, u := range c.Uplink.All() {
		if !slices.Contains(out, u.Interface) {
			out = append(out, u.Interface)
		}
	}
	return out
}

func (s *Server) uplinks() []diag.Uplink {
	if s.o.Uplinks == nil {
		return []diag.Uplink{}
	}
	return s.o.Uplinks()
}

func (s *Server) handleDiag(w http.ResponseWriter, r *http.Request) {
	c := s.o.Config()
	writeJSON(w, 200, diagView{Uplinks: s.uplinks(), Trunks: trunks(c), Interfaces: captureInterfaces(c),
		QTypes: diag.QTypes, MaxCount: diag.MaxCount, MaxCapture: diag.MaxCapture.Seconds()})
}

type diagRequest struct {
	Uplink  string `json:"uplink"` // its role or name
	Target  string `json:"target"`
	Count   int    `json:"count"`
	Type    string `json:"type"`
	Trunk   string `json:"trunk"`
	Iface   string `json:"interface"`
	Seconds int    `json:"seconds"`
}

// startDiag reads a request and takes a run's slot; done gives it back.
func (s *Server) startDiag(w http.ResponseWriter, r *http.Request) (req diagRequest, done func(), ok bool) {
	if err := readJSON(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return req, nil, false
	}
	if !s.diag.rate.Allow() {
		httpError(w, http.StatusTooManyRequests, "too many diagnostics in a short time: wait a few seconds")
		return req, nil, false
	}
	select {
	case s.diag.runs <- struct{}{}:
	default:
		httpError(w, http.StatusTooManyRequests, "diagnostics are already running: wait for them to end")
		return req, nil, false
	}
	return req, func() { <-s.diag.runs }, true
}

// pickUplink finds the uplink a request names (by role or by name).
func (s *Server) pickUplink(w http.ResponseWriter, name string) (diag.Uplink, bool) {
	for _, u := range s.uplinks() {
		if strings.EqualFold(u.Role, name) || strings.EqualFold(u.Name, name) {
			return u, true
		}
	}
	httpError(w, http.StatusBadRequest, fmt.Sprintf("no uplink %q (see /api/diag)", name))
	return diag.Uplink{}, false
}

// target checks and resolves a request's target through the uplink.
func (s *Server) target(ctx context.Context, w http.ResponseWriter, u diag.Uplink, t string) (string, netip.Addr, bool) {
	t, err := diag.Target(t)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return "", netip.Addr{}, false
	}
	a, err := diag.Resolve(ctx, u, t)
	if err != nil {
		httpError(w, http.StatusBadGateway, err.Error())
		return "", netip.Addr{}, false
	}
	return t, a, true
}

// handlePing and handleTraceroute answer with every reply once the run is over (at most
// diag.MaxCount seconds, or diag.MaxHops for a traceroute).
func (s *Server) handlePing(w http.ResponseWriter, r *http.Request, a actor) {
	s.echoRun(w, r, a, "ping", func(ctx context.Context, u diag.Uplink, to netip.Addr, req diagRequest, f func(diag.Reply)) error {
		return diag.Ping(ctx, u, to, cmpCount(req.Count), f)
	})
}

func (s *Server) handleTraceroute(w http.ResponseWriter, r *http.Request, a actor) {
	s.echoRun(w, r, a, "traceroute", func(ctx context.Context, u diag.Uplink, to netip.Addr, _ diagRequest, f func(diag.Reply)) error {
		return diag.Traceroute(ctx, u, to, f)
	})
}

func cmpCount(n int) int {
	if n <= 0 {
		return 4
	}
	return min(n, diag.MaxCount)
}

func (s *Server) echoRun(w http.ResponseWriter, r *http.Request, a actor, what string,
	run func(context.Context, diag.Uplink, netip.Addr, diagRequest, func(diag.Reply)) error) {
	req, done, ok := s.startDiag(w, r)
	if !ok {
		return
	}
	defer done()
	u, ok := s.pickUplink(w, req.Uplink)
	if !ok {
		return
	}
	name, to, ok := s.target(r.Context(), w, u, req.Target)
	if !ok {
		return
	}
	s.record(a, "diag."+what, "", fmt.Sprintf("%s (%s) via %s", name, to, u.Name))
	replies := []diag.Reply{}
	err := run(r.Context(), u, to, req, func(rp diag.Reply) { replies = append(replies, rp) })
	out := map[string]any{"target": name, "addr": to.String(), "uplink": u.Name, "interface": u.Interface, "replies": replies}
	if err != nil {
		out["error"] = err.Error()
	}
	writeJSON(w, 200, out)
}

func (s *Server) handleDNSLookup(w http.ResponseWriter, r *http.Request, a actor) {
	req, done, ok := s.startDiag(w, r)
	if !ok {
		return
	}
	defer done()
	u, ok := s.pickUplink(w, req.Uplink)
	if !ok {
		return
	}
	name, err := diag.Target(req.Target)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	qtype := strings.ToUpper(cmpOr(req.Type, "A"))
	if !slices.Contains(diag.QTypes, qtype) {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("record type %q is not one of %s", req.Type, strings.Join(diag.QTypes, ", ")))
		return
	}
	s.record(a, "diag.dns", "", fmt.Sprintf("%s %s via %s", name, qtype, u.Name))
	ans, err := diag.Lookup(r.Context(), u, name, qtype)
	if err != nil {
		httpError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"name": name, "type": qtype, "uplink": u.Name, "answer": ans})
}

func cmpOr(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return strings.TrimSpace(s)
}

// handleSIPOptions sends one SIP OPTIONS to a configured trunk (only those: the page is not
// a SIP scanner) through the chosen uplink.
func (s *Server) handleSIPOptions(w http.ResponseWriter, r *http.Request, a actor) {
	req, done, ok := s.startDiag(w, r)
	if !ok {
		return
	}
	defer done()
	u, ok := s.pickUplink(w, req.Uplink)
	if !ok {
		return
	}
	var target string
	for _, t := range trunks(s.o.Config()) {
		if t.Name == req.Trunk {
			target = t.Target
		}
	}
	to, err := netip.ParseAddrPort(target)
	if err != nil {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("no trunk %q with an options target (sip_peers.NAME.options)", req.Trunk))
		return
	}
	s.record(a, "diag.sip_options", "", fmt.Sprintf("trunk %s (%s) via %s", req.Trunk, to, u.Name))
	out := map[string]any{"trunk": req.Trunk, "target": to.String(), "uplink": u.Name}
	if rtt, err := diag.SIPOptions(r.Context(), u, to); err != nil {
		out["error"] = err.Error()
	} else {
		out["rtt_ns"], out["text"] = rtt, fmt.Sprintf("%s answered in %s via %s", to, rtt.Round(10*time.Microsecond), u.Name)
	}
	writeJSON(w, 200, out)
}

// handleCapture captures on one of the box's interfaces for the seconds asked (at most
// diag.MaxCapture, diag.MaxCaptureBytes) and sends it as a pcapng file; one at a time.
func (s *Server) handleCapture(w http.ResponseWriter, r *http.Request, a actor) {
	var req diagRequest
	if err := readJSON(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !slices.Contains(captureInterfaces(s.o.Config()), req.Iface) {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("%q is not the LAN's or an uplink's interface", req.Iface))
		return
	}
	d := time.Duration(req.Seconds) * time.Second
	if d <= 0 || d > diag.MaxCapture {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("capture for 1 to %d seconds", int(diag.MaxCapture.Seconds())))
		return
	}
	if !s.diag.capture.TryLock() {
		httpError(w, http.StatusTooManyRequests, "a capture is already running: one at a time")
		return
	}
	defer s.diag.capture.Unlock()
	s.record(a, "diag.capture", "", fmt.Sprintf("%s for %s", req.Iface, d))
	// Into memory first (bounded by diag.MaxCaptureBytes): a failure is then an error, not a
	// truncated download that looks whole.
	var buf bytes.Buffer
	st, err := diag.Capture(r.Context(), req.Iface, d, &buf)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="capture-%s-%s.pcapng"`, req.Iface, s.o.Now().UTC().Format("20060102T150405Z")))
	w.Header().Set("X-Capture-Packets", fmt.Sprint(st.Packets))
	w.Header().Set("X-Capture-Truncated", fmt.Sprint(st.Truncated))
	_, _ = w.Write(buf.Bytes())
}
