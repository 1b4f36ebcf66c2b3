package config

import (
	"net"
	"time"

	"github.com/BurntSushi/toml"
)

// Time is [time]: how the box keeps its clock (a Raspberry Pi has no battery-backed clock
// and starts in 1970 after a power cut) and serves it to the LAN.
type Time struct {
	// Servers are NTP servers (names or addresses, an optional :port), asked through the
	// active uplink.
	Servers []string `toml:"servers"`
	// SetClock steps the system clock to the servers' time. Default true; false on a box
	// whose clock something else keeps (the box then only tracks its offset).
	SetClock bool `toml:"set_clock"`
	// ServeLAN answers SNTP on the LAN addresses (UDP 123) once the clock is trusted.
	ServeLAN bool `toml:"serve_lan"`
	// Interval is how often the servers are asked once the clock is synced.
	Interval time.Duration `toml:"interval"`
}

func (s *Time) setDefaults(md *toml.MetaData) {
	if !md.IsDefined("time", "servers") {
		s.Servers = []string{"0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org"}
	}
	if !md.IsDefined("time", "set_clock") {
		s.SetClock = true
	}
	if !md.IsDefined("time", "serve_lan") {
		s.ServeLAN = true
	}
	if s.Interval == 0 {
		s.Interval = 15 * time.Minute
	}
}

func (s *Time) check(c *Config, v *validator) {
	if len(s.Servers) == 0 {
		v.errf(key("time", "servers"), "at least one NTP server is needed: without one the box's clock stays untrusted (and reads 1970 on a board without a clock battery)")
	}
	for _, srv := range s.Servers {
		host := srv
		if h, _, err := net.SplitHostPort(srv); err == nil {
			host = h
		}
		if ip := net.ParseIP(host); ip != nil {
			if ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() {
				v.errf(key("time", "servers"), "%s is not an NTP server's address", srv)
			}
			continue
		}
		if msg := domainErr(host); msg != "" {
			v.errf(key("time", "servers"), "%s", msg)
		}
	}
	if s.Interval < 16*time.Second || s.Interval > 36*time.Hour {
		v.errf(key("time", "interval"), "must be between 16s and 36h (it is %s): NTP servers rate-limit faster clients", s.Interval)
	}
}
