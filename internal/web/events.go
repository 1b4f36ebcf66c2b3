package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"
)

// The live page: the status, and the event stream that pushes it when something changes.

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status())
}

// maxStreams bounds the open event streams, maxStreamsPerClient those of one client (by
// clientKey): a few tabs are a person, more are someone keeping others from the live page.
const (
	maxStreams          = 256
	maxStreamsPerClient = 4
)

// sseWriteTimeout bounds one write of the event stream (a variable for the tests).
var sseWriteTimeout = 30 * time.Second

// handleSSE pushes the status to an open page whenever something changes (and every 5 s, for
// the counters), at most 4 times a second.
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	ch := make(chan struct{}, 1)
	key := s.clientKey(remoteAddr(r))
	if code, err := s.openStream(ch, key); err != nil {
		httpError(w, code, err.Error())
		return
	}
	defer s.closeStream(ch, key)
	// A page that stops reading (a laptop gone to sleep) would block a write for as long as
	// its connection stays open, holding one of the streams: each write gets a deadline.
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{})
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		b := s.statusJSON()
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-ch:
		case <-tick.C:
		}
		select { // let a burst of events settle into one update
		case <-r.Context().Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// openStream registers an event stream of a client, within the limits; the code answers a refusal.
func (s *Server) openStream(ch chan struct{}, key netip.Prefix) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[key] >= maxStreamsPerClient {
		return http.StatusTooManyRequests, fmt.Errorf("%d status pages already open from %s: close one", maxStreamsPerClient, key)
	}
	if len(s.clients) >= maxStreams { // each open page costs a status snapshot every few seconds
		return http.StatusServiceUnavailable, errors.New("too many open status pages")
	}
	s.clients[ch] = struct{}{}
	s.streams[key]++
	return 0, nil
}

// closeStream forgets an event stream.
func (s *Server) closeStream(ch chan struct{}, key netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, ch)
	if s.streams[key]--; s.streams[key] <= 0 {
		delete(s.streams, key)
	}
}

// snapshot is a status as JSON, made after gen changes.
type snapshot struct {
	b   []byte
	gen uint64
	at  time.Time
}

// snapshotAge bounds how long the streams share one status: the counters move between
// wake-ups.
const snapshotAge = time.Second

// statusJSON is the status for the event streams: one snapshot serves every open page until
// something changes, so many pages cost little more than one.
func (s *Server) statusJSON() []byte {
	s.mu.Lock()
	snap, gen := s.snap, s.gen
	s.mu.Unlock()
	if snap.b != nil && snap.gen == gen && time.Since(snap.at) < snapshotAge {
		return snap.b
	}
	b, _ := json.Marshal(s.status())
	s.mu.Lock()
	if gen >= s.snap.gen { // a snapshot begun after a later change is newer than this one
		s.snap = snapshot{b: b, gen: gen, at: time.Now()}
	}
	s.mu.Unlock()
	return b
}
