package dhcpd

import (
	"context"
	"fmt"
	"time"
)

// saveEvery is the least time between two writes of the lease file: a flood of REQUESTs
// changes the table thousands of times a second, the disk (an SD card) sees one write.
const saveEvery = time.Second

// changedLocked notes a change of the table to save; publish also makes a new view at once
// (a new device, name or address; a renewal's later expiry waits for the next write).
// s.mu is held.
func (s *Server) changedLocked(publish bool) {
	s.dirty = true
	if publish {
		s.publishLocked()
	}
	select {
	case s.saveKick <- struct{}{}:
	default:
	}
}

// saveLoop writes the table after each change, at most once every saveEvery, until ctx ends.
func (s *Server) saveLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.saveKick:
		}
		s.flush()
		select {
		case <-ctx.Done():
			return
		case <-time.After(saveEvery):
		}
	}
}

// flush writes the table if it changed since the last write. The table is copied under
// s.mu and written without it: a slow disk never holds up DHCP, and DNS never waits at all.
func (s *Server) flush() {
	s.saveMu.Lock() // taken first: two writes in a row keep their order
	defer s.saveMu.Unlock()
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	leases := s.t.copyLeases()
	s.publishLocked() // the renewals' new expiries
	s.mu.Unlock()
	if s.path == "" {
		return
	}
	err := saveLeases(s.path, leases)
	s.writes.Add(1)
	if err != nil {
		s.o.Log.Error("dhcp leases not saved", "err", err)
		s.alert(KeyLeases, fmt.Sprintf("the DHCP leases could not be saved (%v): they are kept in memory, and lost if the box restarts", err))
		s.mu.Lock()
		s.dirty = true // tried again on the next change
		s.mu.Unlock()
		return
	}
	if s.o.Alerts != nil {
		s.o.Alerts.Clear(KeyLeases)
	}
}
