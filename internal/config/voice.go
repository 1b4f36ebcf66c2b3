package config

import "github.com/BurntSushi/toml"

// Voice is [voice]: voice-first shaping of the uplinks and the calls' measured quality.
type Voice struct{}

func (s *Voice) setDefaults(md *toml.MetaData) {}

func (s *Voice) check(c *Config, v *validator) {}
