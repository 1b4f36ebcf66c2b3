// Package version holds the build's version and time, set by the linker at build time.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"
)

// Set with -ldflags "-X github.com/officeedge/appliance/internal/version.Version=... -X ...BuildTime=...".
var (
	Version   = "dev"
	BuildTime = "unknown"
)

// String is the one line `appliance version` prints.
func String() string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("appliance %s%s built %s %s/%s", Version, rev, BuildTime, runtime.GOOS, runtime.GOARCH)
}

// floor is the earliest time a right clock can read: no box runs before it was built.
var floor = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// ClockFloor is the build's time when known (else 2025-01-01): a clock earlier than it is
// wrong, like a Raspberry Pi's without a battery before it reaches a time server.
func ClockFloor() time.Time {
	if t, err := time.Parse(time.RFC3339, BuildTime); err == nil && t.After(floor) {
		return t
	}
	return floor
}
