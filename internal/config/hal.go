package config

import "github.com/BurntSushi/toml"

// HAL is [hal]: the box's LEDs and button.
type HAL struct{}

func (s *HAL) setDefaults(md *toml.MetaData) {}

func (s *HAL) check(c *Config, v *validator) {}
