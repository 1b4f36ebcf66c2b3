package integration

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/officeedge/appliance"

// TestImportLayers reads every package's imports (go list, the non-test files: what ships in
// the binary) and fails if one runs back up the layers: the product reaching into
// integration/, wan or netcfg depending on the daemon's wiring, netcfg on wan, or anything but
// a command depending on internal/daemon (the wiring sits on top, nothing builds on it).
func TestImportLayers(t *testing.T) {
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Deps", "./...")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		n++
		for _, d := range p.Deps {
			if why := backUp(p.ImportPath, d); why != "" {
				t.Errorf("%s depends on %s: %s", p.ImportPath, d, why)
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list named %d packages; expected the whole module", n)
	}
}

// backUp says why pkg may not depend on dep, or "" if it may.
func backUp(pkg, dep string) string {
	switch {
	case under(pkg, "integration"):
		return "" // the labs and benchmarks sit on top of everything
	case under(dep, "integration"):
		return "the product never imports what only tests and benchmarks use"
	case under(dep, "internal/daemon") && !under(pkg, "cmd") && !under(pkg, "internal/daemon"):
		return "internal/daemon is the wiring: only the commands build on it"
	case under(pkg, "netcfg") && under(dep, "wan"):
		return "netcfg (the kernel owner) sits below wan"
	}
	return ""
}

// under reports whether pkg is the module's folder dir or inside it.
func under(pkg, dir string) bool {
	p := module + "/" + dir
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}
