package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/vpn"
)

// VPN is the WireGuard part as the page reads it (vpn.Service).
type VPN interface {
	Status() vpn.Status
	ClientConfig(name string) (string, error)
	QR(name string, size int) ([]byte, error)
	Rotate(name string) (vpn.Rotation, error)
}

var (
	mVPNHandshake = prometheus.NewDesc("appliance_vpn_peer_last_handshake_seconds", "Seconds since the VPN peer's last WireGuard handshake (absent before its first).", []string{"peer"}, nil)
	mVPNRx        = prometheus.NewDesc("appliance_vpn_peer_received_bytes_total", "Bytes received from the VPN peer.", []string{"peer"}, nil)
	mVPNTx        = prometheus.NewDesc("appliance_vpn_peer_sent_bytes_total", "Bytes sent to the VPN peer.", []string{"peer"}, nil)
	mVPNUp        = prometheus.NewDesc("appliance_vpn_up", "1 while the VPN interface runs, by implementation (kernel or userspace).", []string{"implementation"}, nil)
	vpnDescs      = []*prometheus.Desc{mVPNHandshake, mVPNRx, mVPNTx, mVPNUp}
)

// vpn is the VPN part in force, or nil when it is off.
func (s *Server) vpn() VPN {
	if s.o.VPN == nil {
		return nil
	}
	v, ok := s.o.VPN()
	if !ok {
		return nil
	}
	return v
}

func (s *Server) collectVPN(g, k metric) {
	v := s.vpn()
	if v == nil {
		return
	}
	st := v.Status()
	if st.Implementation == "" {
		g(mVPNUp, 0, "none")
	} else {
		g(mVPNUp, 1, st.Implementation)
	}
	for _, p := range st.Peers {
		if !p.LastHandshake.IsZero() {
			g(mVPNHandshake, s.o.Now().Sub(p.LastHandshake).Seconds(), p.Name)
		}
		k(mVPNRx, float64(p.RxBytes), p.Name)
		k(mVPNTx, float64(p.TxBytes), p.Name)
	}
}

// handleVPN is the VPN card: the box's key and port, and each peer's handshake and traffic.
func (s *Server) handleVPN(w http.ResponseWriter, r *http.Request) {
	v := s.vpn()
	if v == nil {
		writeJSON(w, http.StatusOK, map[string]any{"enabled": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enabled": true, "vpn": v.Status()})
}

// handleVPNConf serves a peer's config file (GET /api/vpn/peer/NAME.conf). It can hold the
// peer's private key: never cached, and each download is in the audit log.
func (s *Server) handleVPNConf(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".conf")
	v := s.vpn()
	if !ok || v == nil {
		httpError(w, http.StatusNotFound, "no such VPN peer config")
		return
	}
	text, err := v.ClientConfig(name)
	if s.vpnErr(w, err) {
		return
	}
	s.record(actor{who: "admin", from: remoteAddr(r).String()}, "vpn.config", "", name)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.conf"`)
	_, _ = w.Write([]byte(text))
}

// handleVPNQR serves a peer's config as a QR code (GET /api/vpn/peer/NAME/qr.png).
func (s *Server) handleVPNQR(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	v := s.vpn()
	if v == nil {
		httpError(w, http.StatusNotFound, "the VPN is off")
		return
	}
	png, err := v.QR(name, 384)
	if s.vpnErr(w, err) {
		return
	}
	s.record(actor{who: "admin", from: remoteAddr(r).String()}, "vpn.qr", "", name)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(png)
}

// handleVPNRotate gives a peer a new key pair (POST /api/vpn/peer/NAME/rotate): the old key
// stops working at once, and the answer carries the new config (the page shows its QR code).
func (s *Server) handleVPNRotate(w http.ResponseWriter, r *http.Request, a actor) {
	name := r.PathValue("name")
	v := s.vpn()
	if v == nil {
		httpError(w, http.StatusNotFound, "the VPN is off")
		return
	}
	rot, err := v.Rotate(name)
	if rot.Changed() { // recorded even when the interface did not take it: the key is new
		before, after := rot.Audit()
		s.record(a, "vpn.rotate", before, after)
	}
	if s.vpnErr(w, err) {
		return
	}
	text, err := v.ClientConfig(name)
	if s.vpnErr(w, err) {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"peer": name, "public_key": rot.New.String(), "config": text})
}

func (s *Server) vpnErr(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, vpn.ErrNoPeer):
		httpError(w, http.StatusNotFound, "no such VPN peer")
	case errors.Is(err, vpn.ErrOwnKey):
		httpError(w, http.StatusConflict, err.Error())
	default:
		httpError(w, http.StatusInternalServerError, err.Error())
	}
	return true
}
