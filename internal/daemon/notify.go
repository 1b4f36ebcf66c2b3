package daemon

import (
	"context"
	"net/http"
	"path/filepath"

	"github.com/officeedge/appliance/internal/notify"
)

func init() {
	Register("notify", func(app *App) (Service, error) {
		n := &notify.Notifier{Config: app.Config, Dir: filepath.Join(app.StateDir, "mailq"), Bus: app.Bus, Log: app.Log}
		partsOf(app).mail = n
		app.Control.HandleFunc("POST /notify/test", func(w http.ResponseWriter, r *http.Request) {
			if err := n.Test(r.Context()); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			_, _ = w.Write([]byte("test email sent\n"))
		})
		return notifyService{n}, nil
	})
}

type notifyService struct{ n *notify.Notifier }

func (s notifyService) Run(ctx context.Context) error { return s.n.Run(ctx) }
