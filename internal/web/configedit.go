package web

import (
	"errors"
	"net/http"
	"time"

	"github.com/officeedge/appliance/internal/cfgedit"
)

// configView is GET /api/config: the file in force, the change waiting for its
// confirmation, and the earlier versions to roll back to.
type configView struct {
	Path    string            `json:"path"`
	Text    string            `json:"text"`
	Window  float64           `json:"window_s"` // the time a change has to be confirmed
	Pending *cfgedit.Pending  `json:"pending"`
	Left    float64           `json:"left_s,omitempty"` // until the pending change is put back
	History []cfgedit.Version `json:"history"`
}

func (s *Server) editor(w http.ResponseWriter) (*cfgedit.Editor, bool) {
	if s.o.ConfigEdit == nil {
		httpError(w, http.StatusServiceUnavailable, "the configuration cannot be changed from this page (no editor: see the alerts)")
		return nil, false
	}
	return s.o.ConfigEdit, true
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	e, ok := s.editor(w)
	if !ok {
		return
	}
	text, err := e.Current()
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	hist, err := e.History()
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	v := configView{Path: s.configPath(), Text: string(text), Window: e.Window().Seconds(), History: hist}
	if v.History == nil {
		v.History = []cfgedit.Version{}
	}
	if p, ok := e.Pending(); ok {
		v.Pending = &p
		v.Left = max(p.Deadline.Sub(s.o.Now()), 0).Round(time.Second).Seconds()
	}
	writeJSON(w, 200, v)
}

func (s *Server) configPath() string {
	if s.o.ConfigPath != "" {
		return s.o.ConfigPath
	}
	return "the config file"
}

func (s *Server) handleConfigVersion(w http.ResponseWriter, r *http.Request) {
	e, ok := s.editor(w)
	if !ok {
		return
	}
	b, err := e.Version(r.URL.Query().Get("name"))
	if err != nil {
		httpError(w, http.StatusNotFound, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

type configRequest struct {
	Text  string `json:"text"`
	Force bool   `json:"force"`
	Name  string `json:"name"` // a history version (rollback)
	ID    string `json:"id"`   // the waiting change (confirm)
}

func (s *Server) readConfigRequest(w http.ResponseWriter, r *http.Request) (*cfgedit.Editor, configRequest, bool) {
	var req configRequest
	e, ok := s.editor(w)
	if !ok {
		return nil, req, false
	}
	if err := readJSON(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return nil, req, false
	}
	return e, req, true
}

// handleConfigCheck shows what a candidate would do: its errors with line and field, the
// firewall's diff and what it would let in. Nothing changes.
func (s *Server) handleConfigCheck(w http.ResponseWriter, r *http.Request, _ actor) {
	e, req, ok := s.readConfigRequest(w, r)
	if !ok {
		return
	}
	writeJSON(w, 200, e.Check([]byte(req.Text)))
}

func (s *Server) handleConfigApply(w http.ResponseWriter, r *http.Request, a actor) {
	e, req, ok := s.readConfigRequest(w, r)
	if !ok {
		return
	}
	p, err := e.Apply(r.Context(), []byte(req.Text), a.by(), req.Force)
	s.answerChange(w, p, err)
}

func (s *Server) handleConfigRollback(w http.ResponseWriter, r *http.Request, a actor) {
	e, req, ok := s.readConfigRequest(w, r)
	if !ok {
		return
	}
	p, err := e.Rollback(r.Context(), req.Name, a.by(), req.Force)
	s.answerChange(w, p, err)
}

// answerChange answers an apply or a rollback: the change waiting for its confirmation, or
// why it was refused (with the check, for the page to show).
func (s *Server) answerChange(w http.ResponseWriter, p cfgedit.Pending, err error) {
	var ce *cfgedit.CheckError
	switch {
	case err == nil:
		s.Changed()
		writeJSON(w, 200, map[string]any{"pending": p, "left_s": max(p.Deadline.Sub(s.o.Now()), 0).Seconds()})
	case errors.As(err, &ce):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "check": ce.Check})
	case errors.Is(err, cfgedit.ErrPending), errors.Is(err, cfgedit.ErrNoChange):
		httpError(w, http.StatusConflict, err.Error())
	default:
		httpError(w, http.StatusInternalServerError, err.Error())
	}
}

func (s *Server) handleConfigConfirm(w http.ResponseWriter, r *http.Request, a actor) {
	e, req, ok := s.readConfigRequest(w, r)
	if !ok {
		return
	}
	if err := e.Confirm(r.Context(), req.ID, a.by()); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, cfgedit.ErrNoSuch) {
			code = http.StatusConflict
		}
		httpError(w, code, err.Error())
		return
	}
	writeJSON(w, 200, map[string]string{"confirmed": req.ID})
}
