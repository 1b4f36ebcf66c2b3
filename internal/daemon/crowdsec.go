package daemon

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/crowdsec"
)

// newCrowdSecPart makes the fleet-sharing part, or nil when [crowdsec] is off.
func newCrowdSecPart(a *App) (*crowdsec.Service, error) {
	cfg := a.Config()
	if !cfg.CrowdSec.Enabled {
		a.CrowdSec.Store(nil)
		return nil, nil
	}
	if a.Owner == nil {
		return nil, fmt.Errorf("daemon: crowdsec needs the firewall owner")
	}
	s, err := crowdsec.New(crowdsec.Options{Config: cfg.CrowdSec, Site: cfg.Site, Owner: a.Owner,
		StateDir: a.StateDir, Alerts: a.Alerts, Bus: a.Bus, Log: a.Log, Shared: a.sipguardShared})
	if err != nil {
		return nil, err
	}
	a.CrowdSec.Store(s)
	return s, nil
}

// crowdSecStartKey: every [crowdsec] setting is read at start (credentials, TLS, interval).
func crowdSecStartKey(c *config.Config) string { return fmt.Sprint(c.CrowdSec) }

// crowdSecStatus answers GET /crowdsec/status.
func (a *App) crowdSecStatus(w http.ResponseWriter, _ *http.Request) {
	s := a.CrowdSec.Load()
	if s == nil {
		http.Error(w, "crowdsec is off ([crowdsec] enabled = false)", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, s.Status())
}

// sipguardShared says whether sipguard's block of p may go to the fleet: only one whose
// source proved its address (sipguard.Guard.Shared); none while sipguard is off.
func (a *App) sipguardShared(p netip.Prefix) (string, bool) {
	g := a.guard()
	if g == nil {
		return "", false
	}
	return g.g.Shared(p)
}
