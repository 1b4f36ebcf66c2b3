package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/store"
)

// auditConfig records a change of the config file: since the last one recorded (a reload,
// or an edit made while the daemon was stopped), with the lines that differ, secrets masked.
func (a *App) auditConfig(who string) {
	snap := filepath.Join(a.StateDir, "audit-config.last")
	cur, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		return
	}
	prev, err := os.ReadFile(snap)
	if err == nil && string(prev) == string(cur) {
		return
	}
	if err == nil { // the first start has nothing to compare with
		before, after := lineDiff(string(prev), string(cur))
		if rerr := a.Audit.Record(audit.Entry{Who: who, From: "box", Via: "config", What: "config.changed " + a.ConfigPath, Before: before, After: after}); rerr != nil {
			a.Log.Error("audit", "err", rerr)
		}
	}
	if err := store.WriteFile(snap, cur, 0o600); err != nil {
		a.Log.Error("audit", "err", err)
	}
}

var secretLine = regexp.MustCompile(`(?i)^(\s*[a-z_]*(password|secret|key)[a-z_]*\s*=\s*).*$`)

// lineDiff returns the lines only in a and the lines only in b.
func lineDiff(a, b string) (before, after string) {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	var x, y []string
	for _, l := range strings.Split(a, "\n") {
		if cb[l] > 0 {
			cb[l]--
			continue
		}
		x = append(x, secretLine.ReplaceAllString(l, "${1}***"))
	}
	for _, l := range strings.Split(b, "\n") {
		if ca[l] > 0 {
			ca[l]--
			continue
		}
		y = append(y, secretLine.ReplaceAllString(l, "${1}***"))
	}
	return strings.TrimSpace(strings.Join(x, "\n")), strings.TrimSpace(strings.Join(y, "\n"))
}

func (a *App) auditExport(w http.ResponseWriter, r *http.Request) {
	es, err := a.Audit.Entries()
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	_ = audit.WriteCSV(w, es)
}

// recordCLI records an action of the command line (the CLI runs as root on the box, so the
// control socket is the right door: only root reaches it).
func (a *App) auditRecord(w http.ResponseWriter, r *http.Request) {
	var e audit.Entry
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&e); err != nil {
		http.Error(w, "audit: bad record: "+err.Error(), 400)
		return
	}
	e.Via = "cli"
	e.Time = time.Time{}
	if e.From == "" {
		e.From = "console"
	}
	if err := a.Audit.Record(e); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	a.Bus.Publish(events.Event{Kind: "cli." + e.What, Source: "cli", Message: fmt.Sprintf("%s by %s: %s", e.What, e.Who, e.After)})
	w.WriteHeader(http.StatusNoContent)
}
