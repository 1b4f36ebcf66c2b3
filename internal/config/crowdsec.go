package config

import (
	"encoding/hex"
	"net/url"
	"time"

	"github.com/BurntSushi/toml"
)

// CrowdSec is [crowdsec]: a CrowdSec Local API the box shares what it catches with. With a
// bouncer key it pulls the fleet's decisions into the blocklist; with a machine login it
// pushes each sipguard block as an alert.
type CrowdSec struct {
	Enabled bool   `toml:"enabled"`
	URL     string `toml:"url"` // https://lapi.example.net:8080
	// CAFile is the only CA trusted for the LAPI's certificate (PEM); PinSHA256 pins the
	// certificate itself (hex SHA-256 of its DER), for a self-signed LAPI. Either, both, or
	// neither (then the system's roots).
	CAFile    string `toml:"ca_file"`
	PinSHA256 string `toml:"pin_sha256"`
	// CertFile and KeyFile are the box's client certificate, when the LAPI asks for one.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// BouncerKeyFile holds the bouncer API key (`cscli bouncers add`); empty: no pulling.
	BouncerKeyFile string `toml:"bouncer_key_file"`
	// MachineID and MachinePasswordFile are the box's login (`cscli machines add`); empty:
	// no pushing. Credential files must be readable by the daemon alone (mode 0600).
	MachineID           string `toml:"machine_id"`
	MachinePasswordFile string `toml:"machine_password_file"`
	// Interval between pulls of the decision stream.
	Interval time.Duration `toml:"interval"`
	// MaxBodyMB is the largest answer taken from the LAPI: a bigger one is refused.
	MaxBodyMB int `toml:"max_body_mb"`
	// AllowHTTP permits an http:// URL (a LAPI on the box's own VPN); keys go in the clear.
	AllowHTTP bool `toml:"allow_http"`
}

func (s *CrowdSec) setDefaults(md *toml.MetaData) {
	if s.Interval == 0 {
		s.Interval = 2 * time.Second
	}
	if !md.IsDefined("crowdsec", "max_body_mb") {
		s.MaxBodyMB = 64
	}
}

func (s *CrowdSec) check(c *Config, v *validator) {
	if !s.Enabled {
		return
	}
	f := func(k string) string { return key("crowdsec", k) }
	u, err := url.Parse(s.URL)
	switch {
	case s.URL == "":
		v.errf(f("url"), "give the Local API's address, e.g. https://lapi.example.net:8080")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		v.errf(f("url"), "%q is not an http(s) address like https://lapi.example.net:8080", s.URL)
	case u.Scheme == "http" && !s.AllowHTTP:
		v.errf(f("url"), "%q sends the box's keys in the clear: use https, or set allow_http = true for a LAPI reached over a VPN", s.URL)
	}
	if s.PinSHA256 != "" {
		if b, err := hex.DecodeString(s.PinSHA256); err != nil || len(b) != 32 {
			v.errf(f("pin_sha256"), "must be the certificate's SHA-256 as 64 hex digits")
		}
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		v.errf(f("cert_file"), "give both cert_file and key_file, or neither")
	}
	if s.BouncerKeyFile == "" && s.MachinePasswordFile == "" {
		v.errf(f("bouncer_key_file"), "give bouncer_key_file (to pull decisions), machine_password_file (to push alerts), or both")
	}
	if (s.MachineID == "") != (s.MachinePasswordFile == "") {
		v.errf(f("machine_id"), "give both machine_id and machine_password_file, or neither")
	}
	if s.Interval < 500*time.Millisecond || s.Interval > time.Hour {
		v.errf(f("interval"), "must be from 500ms to 1h (it is %s)", s.Interval)
	}
	if s.MaxBodyMB < 1 || s.MaxBodyMB > 1024 {
		v.errf(f("max_body_mb"), "must be from 1 to 1024 (it is %d)", s.MaxBodyMB)
	}
}
