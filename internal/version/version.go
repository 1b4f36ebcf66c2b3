// Package version holds the build's version and time, set by the linker at build time.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
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
