package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/officeedge/appliance/internal/events"
)

// Logging in and out (the passwords, sessions and lockouts are auth.go's).

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"logged_in": false, "password_set": s.auth.passwordSet()}
	if sess := s.auth.session(r); sess != nil {
		out["logged_in"], out["csrf"], out["expires"] = true, sess.csrf, sess.expires
	}
	writeJSON(w, 200, out)
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		httpError(w, http.StatusForbidden, err.Error())
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := readJSON(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	addr := remoteAddr(r)
	res, err := s.auth.login(r.Context(), addr, req.Password)
	if err != nil {
		s.loginRefused(w, addr, res, err)
		return
	}
	ttl, _, _ := s.auth.limits()
	http.SetCookie(w, sessionCookie(res.id, int(ttl.Seconds())))
	s.record(actor{"admin", addr.String()}, "login", "", "")
	writeJSON(w, 200, map[string]any{"logged_in": true, "csrf": res.csrf})
}

// loginRefused answers a failed login. It tells people once per lockout, and once per
// series of wrong passwords: an event per refused request would let anyone push the
// blocks and failovers off the page's recent events.
func (s *Server) loginRefused(w http.ResponseWriter, addr netip.Addr, res loginResult, err error) {
	fields := map[string]string{"addr": addr.String(), "key": lockKey(addr).String()}
	if res.spentNow {
		s.publish("web.login.spent", events.Warn, "wrong passwords from several addresses spent the login budget: addresses with wrong passwords are refused for a while", fields)
	}
	switch {
	case errors.Is(err, errLocked):
		if res.lockStarted {
			s.publish("web.login.locked", events.Warn, fmt.Sprintf("logins from %s locked out for %s after wrong passwords", lockKey(addr), res.lockedFor), fields)
		}
		w.Header().Set("Retry-After", fmt.Sprint(int(res.lockedFor.Seconds())+1))
		httpError(w, http.StatusTooManyRequests, fmt.Sprintf("%v for %s", err, res.lockedFor.Round(time.Second)))
	case errors.Is(err, errNoPassword):
		httpError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, errBadLogin):
		if res.firstWrong {
			s.publish("web.login.failed", events.Info, "wrong password from "+addr.String(), fields)
		}
		httpError(w, http.StatusUnauthorized, err.Error())
	default: // the client went away while waiting
		httpError(w, http.StatusServiceUnavailable, err.Error())
	}
}

// sessionCookie is the login's cookie: Secure (HTTPS only) and HttpOnly; SameSite=Strict
// keeps other sites' requests from carrying it. maxAge -1 deletes it.
func sessionCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, a actor) {
	s.auth.logout(r)
	http.SetCookie(w, sessionCookie("", -1))
	s.record(a, "logout", "", "")
	writeJSON(w, 200, map[string]any{"logged_in": false})
}
