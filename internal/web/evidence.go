package web

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// Downloads of what happened: sipguard's evidence, abuse reports and the audit log.

func (s *Server) handleAuditCSV(w http.ResponseWriter, r *http.Request) {
	if s.o.Audit == nil {
		httpError(w, 404, "no audit log")
		return
	}
	es, err := s.o.Audit.Entries()
	if err != nil {
		httpError(w, 500, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="audit.csv"`)
	_ = audit.WriteCSV(w, es)
}

// handleEvidence serves the packet capture sipguard recorded for a blocked address.
func (s *Server) handleEvidence(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.URL.Query().Get("addr"))
	if err != nil {
		httpError(w, 400, err.Error())
		return
	}
	key := canonical(p)
	g, _ := s.guardEntry(p)
	f, err := s.stateFile(g.Evidence)
	if err != nil {
		httpError(w, 404, "no evidence recorded for "+key)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="evidence-%s%s"`, strings.NewReplacer(":", "_", "/", "_").Replace(key), filepath.Ext(g.Evidence)))
	_, _ = io.Copy(w, f)
}

// guardEntry finds sipguard's record of a block.
func (s *Server) guardEntry(p netip.Prefix) (sipguard.Entry, bool) {
	if s.o.GuardEntries == nil {
		return sipguard.Entry{}, false
	}
	for _, g := range s.o.GuardEntries() {
		if g.Prefix.Masked() == p {
			return g, true
		}
	}
	return sipguard.Entry{}, false
}

// blockEntry finds the blocklist's entry for p (not a community list's alone).
func (s *Server) blockEntry(p netip.Prefix) (netcfg.Entry, bool) {
	if s.o.Blocklist == nil {
		return netcfg.Entry{}, false
	}
	for _, e := range s.o.Blocklist.State().Entries {
		if e.Prefix.Masked() == p {
			return e, true
		}
	}
	return netcfg.Entry{}, false
}

// handleAbuse writes an abuse report for a blocked address: sipguard's own (with the abuse
// contact it looked up), or one made from the blocklist's entry, ready to send to the abuse
// contact of the network it came from.
func (s *Server) handleAbuse(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.URL.Query().Get("addr"))
	if err != nil {
		httpError(w, 400, err.Error())
		return
	}
	g, isGuard := s.guardEntry(p)
	if f, err := s.stateFile(g.Report); err == nil {
		defer f.Close()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.Copy(w, f)
		return
	}
	e, ok := s.blockEntry(p)
	if !ok && !isGuard {
		httpError(w, 404, "no block recorded for "+canonical(p))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	s.writeReport(w, p, e, g)
}

// writeReport writes an abuse report from what the blocklist and sipguard know of a block.
func (s *Server) writeReport(w io.Writer, p netip.Prefix, e netcfg.Entry, g sipguard.Entry) {
	key := canonical(p)
	since := e.Since()
	if since.IsZero() {
		since = g.Since
	}
	fmt.Fprintf(w, "Subject: Abuse report: attacks on a telephone system from %s\n\n", key)
	fmt.Fprintf(w, "Hello,\n\nthe office edge firewall of %q saw attacks on its telephone system (SIP) from %s,\n", s.o.Config().Site, key)
	fmt.Fprintf(w, "which your network announces. The address has been blocked since %s.\n\n", since.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Reason: %s\n", cmp.Or(e.Reason(), g.Reason, "blocked by the office's administrator"))
	if g.Detail != "" {
		fmt.Fprintf(w, "Detail: %s\n", g.Detail)
	}
	if n, ok := s.packets(e.Prefix); ok {
		fmt.Fprintf(w, "Packets dropped: %d\n", n)
	}
	if len(e.Claims) > 0 {
		fmt.Fprintf(w, "\nBlocked (times in UTC):\n")
		for _, c := range e.Claims {
			fmt.Fprintf(w, "  %s  %s  %s\n", c.Since.UTC().Format(time.RFC3339), c.Source, c.Reason)
		}
	}
	if g.Evidence != "" {
		fmt.Fprintf(w, "\nA packet capture is available on request.\n")
	}
	fmt.Fprintf(w, "\nPlease stop the traffic and check the host for compromise.\n")
}

// packets is the kernel's drop counter of a blocklist entry, when it is counted.
func (s *Server) packets(p netip.Prefix) (uint64, bool) {
	if s.o.Blocklist == nil || !p.IsValid() {
		return 0, false
	}
	n, ok := s.o.Blocklist.Packets()[p]
	return n, ok
}

// stateFile opens path only if it lies in the state directory: the paths come from another
// part's records. os.OpenInRoot also refuses a symbolic link that leads out of it.
func (s *Server) stateFile(path string) (*os.File, error) {
	rel, ok := s.inState(path)
	if !ok {
		return nil, fmt.Errorf("web: %q is not in the state directory", path)
	}
	return os.OpenInRoot(s.o.StateDir, rel)
}

// inState resolves path (relative ones from the state directory) and says whether it lies in
// it, returning it relative to the state directory.
func (s *Server) inState(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	state, err := filepath.Abs(s.o.StateDir)
	if err != nil {
		return "", false
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(state, path)
	}
	rel, err := filepath.Rel(state, filepath.Clean(path))
	return rel, err == nil && filepath.IsLocal(rel)
}
