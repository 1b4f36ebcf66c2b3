package main

import (
	"github.com/officeedge/appliance/internal/config"

	_ "time/tzdata" // the gokrazy image has no zoneinfo: [site] timezone must load anyway
)

// siteZone is the config for writing times in the site's zone (config.Stamp); a config
// that does not load writes them in UTC, still labelled.
func siteZone(path string) *config.Config {
	cfg, err := config.Load(path)
	if err != nil {
		return &config.Config{}
	}
	return cfg
}
