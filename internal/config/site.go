package config

import (
	"strings"
	"time"
)

// validateSite loads timezone, the IANA zone ("Europe/Berlin") every time shown to people
// is written in: on the page, in the CLI and in emails. Empty means UTC.
func (c *Config) validateSite(v *validator) {
	if c.Timezone == "" {
		c.loc = time.UTC
		return
	}
	// time.LoadLocation also takes "Local" (the box's own zone, which a gokrazy image
	// lacks) and file-like names: only a zone's name is a setting that means one place.
	if c.Timezone == "Local" || strings.Contains(c.Timezone, "..") || strings.HasPrefix(c.Timezone, "/") {
		v.errf("timezone", "%q is not a time zone name: write one like \"Europe/Berlin\" or \"UTC\"", c.Timezone)
		return
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		v.errf("timezone", "unknown time zone %q: write an IANA name like \"Europe/Berlin\", \"America/New_York\" or \"UTC\"", c.Timezone)
		return
	}
	c.loc = loc
}

// Location is the site's time zone (UTC when none is set).
func (c *Config) Location() *time.Location {
	if c == nil || c.loc == nil {
		return time.UTC
	}
	return c.loc
}

// Stamp writes t for people in the site's zone, labelled with the zone ("2026-03-01
// 14:05:09 CET"); the zero time is "never".
func (c *Config) Stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.In(c.Location()).Format("2006-01-02 15:04:05 MST")
}
