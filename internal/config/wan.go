package config

import "github.com/BurntSushi/toml"

// WAN is [wan]: uplink health checks and failover (package wan).
type WAN struct{}

func (s *WAN) setDefaults(md *toml.MetaData) {}

func (s *WAN) check(c *Config, v *validator) {}
