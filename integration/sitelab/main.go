package sitelab

import (
	"fmt"
	"os"
	"testing"

	"github.com/officeedge/appliance/integration/build"
)

// Main runs a package's tests with the appliance built once into *bin first (as root: the
// namespace tests that run it need root anyway), and removes it after. For TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "appliance-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Geteuid() == 0 {
		if *bin, err = build.Daemon(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
