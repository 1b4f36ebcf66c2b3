package web

import "testing"

// A PBX tunnel port open to anywhere is allowed (remote phones) but says so as a warning,
// with what to do, never as "ok" next to the warning.
func TestTunnelCheckWarns(t *testing.T) {
	e := newEnv(t)
	for _, c := range e.s.status().Checklist {
		if c.ID != "tunnel" {
			continue
		}
		if c.Result != "warn" || c.Fix == "" {
			t.Errorf("tunnel check %+v, want a warning with what to do", c)
		}
		return
	}
	t.Error("no tunnel check for the example's tunnel_port open to anywhere")
}
