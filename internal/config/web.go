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
	Port Port `toml:"port"`
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
	for _, a := range s.Listen {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			v.errf(key("web", "listen"), "%s is not an address of the box", a)
		}
	}
	if p := c.WebPort(); p != 0 {
		inAdmin := false
		for _, w := range c.Admin.WebPorts {
			inAdmin = inAdmin || w == p
		}
		if !inAdmin && s.Uplinks {
			c.Warnings = append(c.Warnings, "web.port is not in admin.web_ports: the admin networks cannot reach the status page through the firewall (the LAN can)")
		}
	}
}
