package web

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Who may reach the page and act on it: the LAN and admin networks, HTTPS for all but the
// status, a session and its CSRF token for every action.

// plainAllowed says whether a request may be served over plain HTTP: reading the status and
// the metrics (monitoring, scripts, curl), which hold no secrets. The page itself, its
// session, its event stream, the downloads and every action are HTTPS only.
func plainAllowed(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case "/api/status", "/metrics", "/api/leds":
		return true
	}
	return false
}

// toHTTPS sends a plain HTTP reader to the HTTPS page, and refuses anything else: a
// password or a session sent over plain HTTP has already crossed the network in clear, and
// a redirect would only teach clients that it works.
func (s *Server) toHTTPS(w http.ResponseWriter, r *http.Request) {
	target := s.httpsURL(r)
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	httpError(w, http.StatusForbidden, "log in and act over HTTPS only: "+target)
}

// httpsURL is r's URL on the HTTPS port, under the host name r used.
func (s *Server) httpsURL(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if port := s.o.Config().Web.HTTPSPort; port != 443 && port != 0 {
		host = net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(int(port)))
	} else if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	return u.String()
}

// clientKey is what the event stream limit applies to (a login lockout's is lockKey): the
// address itself on the LAN (every LAN host must be told apart from the others, or one can
// keep all of them from the live page), and from elsewhere an IPv6 address's /64 (a host
// there picks any address of its /64 at will, and would get a fresh count with each).
func (s *Server) clientKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() || a.IsLoopback() {
		return netip.PrefixFrom(a, a.BitLen())
	}
	for _, p := range s.o.Config().LAN.Subnets() {
		if p.Contains(a) {
			return netip.PrefixFrom(a, 128)
		}
	}
	p, _ := a.Prefix(64)
	return p
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "."), "["), "]")
	if _, err := netip.ParseAddr(host); err == nil || strings.EqualFold(host, "localhost") {
		return true
	}
	for _, n := range s.o.Config().Web.Hostnames {
		if strings.EqualFold(strings.TrimSuffix(n, "."), host) {
			return true
		}
	}
	return false
}

// allowed says whether addr is on the LAN, in an admin network, or the box itself.
func (s *Server) allowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	if a.IsLoopback() {
		return true
	}
	cfg := s.o.Config()
	for _, p := range cfg.LAN.Subnets() {
		if p.Contains(a) {
			return true
		}
	}
	for _, p := range cfg.Admin.Networks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// actor is who did something, for the audit log.
type actor struct{ who, from string }

// action wraps a state-changing handler: same origin, a valid session and its CSRF token.
func (s *Server) action(h func(w http.ResponseWriter, r *http.Request, a actor)) http.HandlerFunc {
	return s.actionUpTo(64<<10, h)
}

// actionUpTo is action for requests of up to limit bytes (a whole config file).
func (s *Server) actionUpTo(limit int64, h func(w http.ResponseWriter, r *http.Request, a actor)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := sameOrigin(r); err != nil {
			httpError(w, http.StatusForbidden, err.Error())
			return
		}
		sess := s.auth.session(r)
		if sess == nil {
			httpError(w, http.StatusUnauthorized, "log in first")
			return
		}
		tok := r.Header.Get("X-CSRF-Token")
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(sess.csrf)) != 1 {
			httpError(w, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h(w, r, actor{who: "admin", from: remoteAddr(r).String()})
	}
}

func (s *Server) loggedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.auth.session(r) == nil {
			httpError(w, http.StatusUnauthorized, "log in first")
			return
		}
		h(w, r)
	}
}
