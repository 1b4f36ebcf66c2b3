package config

import (
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Web is [web]: the local status page and its login.
type Web struct {
	// Port the page is served on (plain HTTP). Default: the first of admin.web_ports, so that
	// the admin networks reach it through the firewall as well as the LAN. 0 switches it off.
	// Over plain HTTP only the status (/api/status, /metrics) is readable; the page itself
	// redirects to HTTPS, and logins and actions are refused.
	Port Port `toml:"port"`
	// HTTPSPort is where the page, its login and its actions are served over TLS. Default 443.
	HTTPSPort Port `toml:"https_port"`
	// CertFile and KeyFile are a certificate and key (PEM) to serve instead of the
	// self-signed one the box makes in its state directory. Both or neither.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Uplinks also serves the page on the uplinks' static addresses, for the admin networks
	// (the firewall lets only them in; the page itself refuses everyone else too).
	Uplinks bool `toml:"uplinks"`
	// Listen adds more addresses of the box to serve on (the LAN addresses always are).
	Listen []Addr `toml:"listen"`
	// Hostnames the page may be reached by besides the box's IP addresses (a name in the
	// office's DNS). Other names are refused, which defeats DNS rebinding from web pages.
	Hostnames []string `toml:"hostnames"`
	// Session is how long a login lasts.
	Session time.Duration `toml:"session"`
	// MaxFailures wrong passwords from one address lock it out for Lockout.
	MaxFailures int           `toml:"max_failures"`
	Lockout     time.Duration `toml:"lockout"`
	// PasswordHash is the login's argon2id hash (`appliance web passwd --print`), for an image
	// where nobody can run `appliance web passwd` on the box. Never the password itself.
	PasswordHash string `toml:"password_hash"`

	portUnset bool // port not written: follow admin.web_ports
}

func (s *Web) setDefaults(md *toml.MetaData) {
	s.portUnset = !md.IsDefined("web", "port")
	if !md.IsDefined("web", "uplinks") {
		s.Uplinks = true
	}
	if !md.IsDefined("web", "https_port") {
		s.HTTPSPort = 443
	}
	if s.Session == 0 {
		s.Session = 8 * time.Hour
	}
	if s.MaxFailures == 0 {
		s.MaxFailures = 5
	}
	if s.Lockout == 0 {
		s.Lockout = 15 * time.Minute
	}
}

// WebPort is the port the status page is served on (0: off).
func (c *Config) WebPort() Port {
	if !c.Web.portUnset {
		return c.Web.Port
	}
	if len(c.Admin.WebPorts) > 0 {
		return c.Admin.WebPorts[0]
	}
	return 80
}

func (s *Web) check(c *Config, v *validator) {
	if s.PasswordHash != "" && !strings.HasPrefix(s.PasswordHash, "$argon2id$") {
		v.errf(key("web", "password_hash"), "not an argon2id hash: make one with `appliance web passwd --print` (never put the password itself here)")
	}
	if s.Session < time.Minute {
		v.errf(key("web", "session"), "a login must last at least 1m (it is %s)", s.Session)
	}
	if s.MaxFailures < 1 {
		v.errf(key("web", "max_failures"), "must be at least 1")
	}
	if s.Lockout < time.Second {
		v.errf(key("web", "lockout"), "must be at least 1s (it is %s)", s.Lockout)
	}
	for _, h := range s.Hostnames {
		if msg := hostnameErr(h); msg != "" {
			v.errf(key("web", "hostnames"), "%s", msg)
		}
	}
	for _, a := range s.Listen {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			v.errf(key("web", "listen"), "%s is not an address of the box", a)
		}
	}
	s.checkTLS(c, v)
	if p := c.WebPort(); p != 0 && s.Uplinks {
		if !inAdminPorts(c, p) {
			c.Warnings = append(c.Warnings, "web.port is not in admin.web_ports: the admin networks cannot reach the status page through the firewall (the LAN can)")
		}
		if !inAdminPorts(c, s.HTTPSPort) {
			c.Warnings = append(c.Warnings, "web.https_port is not in admin.web_ports: the admin networks cannot log in through the firewall (the LAN can)")
		}
	}
}

// checkTLS checks the HTTPS settings: logins and actions need HTTPS, so it is on whenever the page is.
func (s *Web) checkTLS(c *Config, v *validator) {
	switch p := c.WebPort(); {
	case p == 0: // the page is off: no port matters
	case s.HTTPSPort == 0:
		v.errf(key("web", "https_port"), "must be a port: the login and every action are served over HTTPS only (web.port = 0 switches the page off)")
	case p == s.HTTPSPort:
		v.errf(key("web", "https_port"), "%d is also the plain HTTP port (web.port or the first of admin.web_ports): give HTTPS a port of its own", p)
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		field := "cert_file"
		if s.CertFile == "" {
			field = "key_file"
		}
		v.errf(key("web", field), "cert_file and key_file go together: set both, or neither for the box's own self-signed certificate")
	}
}

func inAdminPorts(c *Config, p Port) bool {
	for _, w := range c.Admin.WebPorts {
		if w == p {
			return true
		}
	}
	return false
}
