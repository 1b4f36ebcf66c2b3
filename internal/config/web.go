package config

import "github.com/BurntSushi/toml"

// Web is [web]: the local status page and its login.
type Web struct{}

func (s *Web) setDefaults(md *toml.MetaData) {}

func (s *Web) check(c *Config, v *validator) {}
