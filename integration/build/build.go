// Package build builds the appliance binary for the labs, the tests and the benchmarks: the one way they get a daemon to run.
package build

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Daemon builds cmd/appliance into dir and returns the binary's path. It builds from the
// module's root whatever the caller's working directory (a package's tests run in their own
// folder), static like the shipped binary (CGO_ENABLED=0). It imports nothing of the product,
// so any package's tests may use it without an import cycle.
func Daemon(dir string) (string, error) {
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build: go env GOMOD: %w", err)
	}
	bin := filepath.Join(dir, "appliance")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/appliance")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: build appliance: %w: %s", err, out)
	}
	return bin, nil
}

// TempDaemon builds cmd/appliance into a new temporary folder named for prefix (a benchmark's
// working folder); done removes the folder.
func TempDaemon(prefix string) (dir, bin string, done func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", "", nil, fmt.Errorf("build: %w", err)
	}
	done = func() { os.RemoveAll(dir) }
	if bin, err = Daemon(dir); err != nil {
		done()
		return "", "", nil, err
	}
	return dir, bin, done, nil
}
