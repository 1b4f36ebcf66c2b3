package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/officeedge/appliance/wan"
)

// The wan part: uplink health and failover. Control API: GET /wan/status (JSON),
// POST /wan/force with body auto, primary or backup.
func init() {
	Register("wan", func(app *App) (Service, error) {
		s := wan.New(app.Config(), app.Bus, app.Log)
		if s == nil {
			return nil, nil
		}
		app.Control.HandleFunc("GET /wan/status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s.Status())
		})
		app.Control.HandleFunc("POST /wan/force", func(w http.ResponseWriter, r *http.Request) {
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
			if err := s.Force(r.Context(), m); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_ = json.NewEncoder(w).Encode(s.Status())
		})
		return s, nil
	})
}
