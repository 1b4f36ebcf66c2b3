package config

import "github.com/BurntSushi/toml"

// SIPGuard is [sipguard]: SIP attack detection and blocking (package sipguard).
type SIPGuard struct{}

func (s *SIPGuard) setDefaults(md *toml.MetaData) {}

func (s *SIPGuard) check(c *Config, v *validator) {}
