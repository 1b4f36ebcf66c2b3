package web

import (
	"fmt"
	"strings"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
)

// Check is one item of the security and disaster-readiness checklist.
type Check struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Result string `json:"result"` // ok, warn (allowed, but a person should know), fail, unknown
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"` // what to do when it is not ok
}

func wide(p config.Prefix) bool {
	return (p.Addr().Is4() && p.Bits() < 16) || (p.Addr().Is6() && p.Bits() < 32)
}

// checklist judges the running config and state; each failed item says what to do.
func (s *Server) checklist(cfg *config.Config, st *Status) []Check {
	var out []Check
	add := func(id, title string, ok bool, detail, fix string) {
		c := Check{ID: id, Title: title, Result: "ok", Detail: detail}
		if !ok {
			c.Result, c.Fix = "fail", fix
		}
		out = append(out, c)
	}
	unknown := func(id, title, detail, fix string) {
		out = append(out, Check{ID: id, Title: title, Result: "unknown", Detail: detail, Fix: fix})
	}
	warn := func(id, title, detail, fix string) {
		out = append(out, Check{ID: id, Title: title, Result: "warn", Detail: detail, Fix: fix})
	}

	// SIP limited to trusted peers.
	sipOpen := cfg.PBX.AllowSIPFromAnywhere && (cfg.PBX.SIPPort != 0 || cfg.PBX.SIPTLSPort != 0)
	var wideSIP []string
	for _, n := range config.SortedNames(cfg.SIPPeers) {
		for _, p := range cfg.SIPPeers[n].Networks {
			if wide(p) {
				wideSIP = append(wideSIP, n+" "+p.String())
			}
		}
	}
	switch {
	case sipOpen:
		add("sip-trusted", "SIP reaches the PBX only from trusted peers", false, "pbx.allow_sip_from_anywhere is on: every address on the internet can try passwords on the PBX",
			"List your SIP trunk provider's and remote offices' addresses under [sip_peers] and set pbx.allow_sip_from_anywhere = false.")
	case len(wideSIP) > 0:
		add("sip-trusted", "SIP reaches the PBX only from trusted peers", false, "very wide trusted networks: "+strings.Join(wideSIP, ", "),
			"Narrow [sip_peers] networks to the provider's documented signalling addresses.")
	default:
		add("sip-trusted", "SIP reaches the PBX only from trusted peers", true, fmt.Sprintf("%d trusted peer group(s); everything else is dropped", len(cfg.SIPPeers)), "")
	}

	// Management closed to the internet.
	var open []string
	for _, p := range cfg.Admin.Networks {
		if wide(p) {
			open = append(open, p.String())
		}
	}
	if cfg.PBX.WebFrom == config.FromAnywhere && len(cfg.PBX.WebPorts) > 0 {
		open = append(open, "the PBX's management console (pbx.web_from = anywhere)")
	}
	add("mgmt-closed", "SSH and management closed to the internet", len(open) == 0,
		fmt.Sprintf("SSH and the box's web pages are reachable from the LAN and %d admin network(s) only", len(cfg.Admin.Networks)),
		"Open to: "+strings.Join(open, "; ")+". Restrict [admin] networks to your admins' fixed addresses and set pbx.web_from = \"admin\".")

	if cfg.PBX.TunnelFrom == config.FromAnywhere && cfg.PBX.TunnelPort != 0 {
		// The 3CX tunnel is meant for remote phones: a warning, not a failure.
		warn("tunnel", "PBX tunnel port", fmt.Sprintf("port %d is open to anywhere, for remote phones", cfg.PBX.TunnelPort),
			"If no remote phone uses the tunnel, close it: pbx.tunnel_port = 0; else limit it with pbx.tunnel_from = \"trusted\".")
	}

	// Community blocklists: configured, and loaded into the blocklist.
	feedsCheck(cfg, st, add)

	// Backup uplink.
	if cfg.Uplink.Backup == nil {
		add("backup-uplink", "Backup uplink configured and healthy", false, "no backup uplink: when the line fails, so do the phones",
			"Connect a 4G/5G modem and configure it under [uplink.backup].")
	} else {
		var state string
		for _, u := range st.Uplinks {
			if u.Role == "backup" {
				state = u.State
			}
		}
		switch state {
		case "up":
			add("backup-uplink", "Backup uplink configured and healthy", true, cfg.Uplink.Backup.Name+" is up", "")
		case "down", "degraded":
			add("backup-uplink", "Backup uplink configured and healthy", false, cfg.Uplink.Backup.Name+" is "+state,
				"Check the modem: power, SIM credit and signal, and its cable to the box.")
		default:
			unknown("backup-uplink", "Backup uplink configured and healthy", cfg.Uplink.Backup.Name+" is configured; no health check has reported yet",
				"Wait for the first health check; if this stays, check that failover (wan) is running.")
		}
	}

	// Email alerts.
	switch {
	case !cfg.Notify.Enabled():
		add("email", "Email alerts configured", false, "nobody is told when the box blocks an attacker or fails over",
			"Set [notify] server, username, password, from and to, then run `appliance notify test`.")
	case st.Mail.LastError != "":
		add("email", "Email alerts configured", false, fmt.Sprintf("%d email(s) queued: %s", st.Mail.Queued, st.Mail.LastError),
			"Check the SMTP server, port, username and password in [notify].")
	default:
		add("email", "Email alerts configured", true, fmt.Sprintf("to %s", strings.Join(cfg.Notify.To, ", ")), "")
	}

	// Backups: each destination's newest verified copy within backup.max_age.
	s.backupCheck(cfg, add)

	// The page's own login.
	add("web-password", "Status page password set", s.auth.passwordSet(), "actions on this page need a login",
		"Run `appliance web passwd` on the box to set it.")

	// The firewall itself.
	add("firewall", "Firewall loaded", st.Firewall.Loaded, fmt.Sprintf("%s: %d rules", st.Firewall.Table, st.Firewall.Rules),
		"The firewall table is missing: restart the appliance service and read its log.")
	return out
}

// feedsCheck judges the community blocklists: configured in [sipguard], and each one in
// force in the blocklist.
func feedsCheck(cfg *config.Config, st *Status, add func(id, title string, ok bool, detail, fix string)) {
	const title = "Blocklist feeds on"
	n := len(cfg.SIPGuard.Feeds)
	if n == 0 || !cfg.SIPGuard.Enabled {
		add("feeds", title, false, "no community blocklist is configured", "Turn on a blocklist feed of known SIP scanners: a [[sipguard.feed]] section.")
		return
	}
	if !st.Blocklist.Available {
		add("feeds", title, true, fmt.Sprintf("%d feed(s) configured (the blocklist cannot be read to see them loaded)", n), "")
		return
	}
	loaded := map[string]netcfg.FeedInfo{}
	for _, f := range st.Blocklist.Feeds {
		loaded[f.Name] = f
	}
	var missing []string
	entries := 0
	for _, f := range cfg.SIPGuard.Feeds {
		if fi, ok := loaded[f.Name]; ok {
			entries += fi.Entries
		} else {
			missing = append(missing, f.Name)
		}
	}
	if len(missing) > 0 {
		add("feeds", title, false, fmt.Sprintf("%d feed(s) configured; not loaded yet: %s", n, strings.Join(missing, ", ")),
			"Check that the box reaches the feed's server (the event log says why a load failed), or that its file exists.")
		return
	}
	add("feeds", title, true, fmt.Sprintf("%d feed(s) in force with %d entries", n, entries), "")
}
