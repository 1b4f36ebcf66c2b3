package config

import "github.com/BurntSushi/toml"

// Relay is [relay]: the office's voice path through a relay host with a stable public
// address (package relay; `appliance relay` runs the other end).
type Relay struct{}

func (r *Relay) setDefaults(md *toml.MetaData) {}

func (r *Relay) check(c *Config, v *validator) {}
