package config

import (
	"net"
	"net/mail"
	"time"

	"github.com/BurntSushi/toml"
)

// Notify is [notify]: email alerts. No server: no emails.
type Notify struct {
	// Server is the SMTP submission server, "host:port" (port 587 with STARTTLS).
	Server string `toml:"server"`
	// Username and Password authenticate (PLAIN, only over TLS). PasswordFile, if set, holds
	// the password instead (so the config file can be shown without it).
	Username     string `toml:"username"`
	Password     string `toml:"password"`
	PasswordFile string `toml:"password_file"`
	// From is the sender address; To the recipients.
	From string   `toml:"from"`
	To   []string `toml:"to"`
	// CAFile trusts this CA (PEM) for the server's certificate besides the system's.
	CAFile string `toml:"ca_file"`
	// InsecureNoTLS sends without STARTTLS (a relay on the LAN that has none). Off by default:
	// without TLS the password and the alerts cross the network in clear.
	InsecureNoTLS bool `toml:"insecure_no_tls"`
	// Group collects the events of a burst into one email: the first event waits this long
	// for others before the email goes.
	Group time.Duration `toml:"group"`
}

func (s *Notify) setDefaults(md *toml.MetaData) {
	if s.Group == 0 {
		s.Group = time.Minute
	}
}

// Enabled says whether emails are configured.
func (s *Notify) Enabled() bool { return s.Server != "" }

func (s *Notify) check(c *Config, v *validator) {
	if s.Group < time.Second || s.Group > time.Hour {
		v.errf(key("notify", "group"), "must be between 1s and 1h (it is %s)", s.Group)
	}
	if s.Server == "" {
		if len(s.To) > 0 {
			v.errf(key("notify", "server"), "recipients are set but no SMTP server (like \"mail.example.com:587\")")
		}
		return
	}
	if host, port, err := net.SplitHostPort(s.Server); err != nil || host == "" || port == "" {
		v.errf(key("notify", "server"), "%q is not host:port (like \"mail.example.com:587\")", s.Server)
	}
	if _, err := mail.ParseAddress(s.From); err != nil {
		v.errf(key("notify", "from"), "%q is not an email address", s.From)
	}
	if len(s.To) == 0 {
		v.errf(key("notify", "to"), "at least one recipient is required")
	}
	for _, t := range s.To {
		if _, err := mail.ParseAddress(t); err != nil {
			v.errf(key("notify", "to"), "%q is not an email address", t)
		}
	}
	if s.Password != "" && s.PasswordFile != "" {
		v.errf(key("notify", "password_file"), "give password or password_file, not both")
	}
	if (s.Password != "" || s.PasswordFile != "") && s.Username == "" {
		v.errf(key("notify", "username"), "a password is set but no username")
	}
	if s.InsecureNoTLS {
		c.Warnings = append(c.Warnings, "notify.insecure_no_tls: alert emails (and the SMTP password) cross the network unencrypted")
	}
}
