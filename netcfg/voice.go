package netcfg

import "github.com/officeedge/appliance/internal/config"

// voiceRules adds the egress classification of the uplinks' shapers ([voice]).
func voiceRules(c *config.Config, t *Table) {}
