package web

import (
	"net/http"

	"github.com/officeedge/appliance/internal/peers"
)

// handlePeers serves the trusted host names with their addresses (logged in: it says who
// may reach the PBX).
func (s *Server) handlePeers(w http.ResponseWriter, _ *http.Request) {
	list := []peers.Name{}
	if s.o.Peers != nil {
		list = s.o.Peers()
	}
	writeJSON(w, http.StatusOK, list)
}
