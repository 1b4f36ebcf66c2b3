package lab

import _ "embed"

// Config is the appliance configuration of the lab's site, for the box namespace.
//
//go:embed lab.toml
var Config []byte
