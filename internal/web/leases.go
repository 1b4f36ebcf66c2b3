package web

import (
	"net/http"

	"github.com/officeedge/appliance/internal/dhcpd"
)

// leasesView is /api/leases: the DHCP server's state and the leases it gave.
type leasesView struct {
	On bool `json:"on"` // false: [dhcp] is off
	dhcpd.Status
}

// handleLeases serves the Leases panel (HTTPS only: it names the office's devices).
func (s *Server) handleLeases(w http.ResponseWriter, r *http.Request) {
	v := leasesView{Status: dhcpd.Status{Leases: []dhcpd.Lease{}}}
	if s.o.DHCP != nil {
		if st, ok := s.o.DHCP(); ok {
			v.On, v.Status = true, st
		}
	}
	if v.Leases == nil {
		v.Leases = []dhcpd.Lease{}
	}
	writeJSON(w, http.StatusOK, v)
}
