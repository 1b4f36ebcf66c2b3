package config

import "github.com/BurntSushi/toml"

// Notify is [notify]: email alerts.
type Notify struct{}

func (s *Notify) setDefaults(md *toml.MetaData) {}

func (s *Notify) check(c *Config, v *validator) {}
