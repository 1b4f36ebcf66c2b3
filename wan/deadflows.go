package wan

import "time"

// flushDeadLine deletes the conntrack entries of the flows a line that just went down was
// carrying, whether or not it carried the default route (a failover flushes the active
// line's in decide). A flow that came in on the standby (a trunk sending media to its
// address) is answered through the line it came in on: left alone, its entry would keep
// sending the PBX's packets into the dead line for as long as they keep coming. Without it,
// the next packet makes a new entry on a live line. It returns how many were removed.
func (s *Service) flushDeadLine(u *uplink) uint {
	n, err := flushLine(u.index, u.addr)
	if err != nil {
		// Without conntrack netlink the flows move when their entries time out.
		s.log.Warn("wan: flows of a dead line", "uplink", u.cfg.Name, "err", err)
	}
	// A packet routed before the line went down may confirm its entry after the dump: sweep
	// again, unless the part has stopped meanwhile.
	i, addr, stopped := u.index, u.addr, s.stopped
	time.AfterFunc(300*time.Millisecond, func() {
		select {
		case <-stopped:
		default:
			_, _ = flushLine(i, addr)
		}
	})
	return n
}
