package config

import "github.com/BurntSushi/toml"

// Blocklist is [blocklist]: limits on what the kernel blocklist takes, from any source.
type Blocklist struct {
	// Widest4 and Widest6 are the shortest prefix lengths a block may have without force
	// (a /8 from a typo or a feed would cut the office off from a good part of the internet).
	Widest4 int `toml:"widest4"`
	Widest6 int `toml:"widest6"`
	// Protect lists more networks the box must never block (a monitoring service, a
	// provider's NOC), besides the ones it protects by itself: the LAN, the uplinks' gateways
	// and DNS servers, the wan probe targets, the SMTP server, trusted SIP peers and admin networks.
	Protect []Prefix `toml:"protect"`
}

func (s *Blocklist) setDefaults(md *toml.MetaData) {
	if !md.IsDefined("blocklist", "widest4") {
		s.Widest4 = 16
	}
	if !md.IsDefined("blocklist", "widest6") {
		s.Widest6 = 32
	}
}

func (s *Blocklist) check(c *Config, v *validator) {
	if s.Widest4 < 1 || s.Widest4 > 32 {
		v.errf(key("blocklist", "widest4"), "must be a prefix length from 1 to 32 (it is %d)", s.Widest4)
	}
	if s.Widest6 < 1 || s.Widest6 > 128 {
		v.errf(key("blocklist", "widest6"), "must be a prefix length from 1 to 128 (it is %d)", s.Widest6)
	}
}
