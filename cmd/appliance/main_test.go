package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/officeedge/appliance/integration/build"
)

// bin is the appliance binary the namespace tests run, built once for the package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "appliance-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if bin, err = build.Daemon(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCLI runs the CLI in-process, as a user would from a shell.
func runCLI(stdin string, args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = run(args, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), err
}

func TestExampleConfigPassesCheck(t *testing.T) {
	example, _, err := runCLI("", "example-config")
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCLI(example, "check", "--config", "-")
	if err != nil {
		t.Fatalf("example-config | check failed: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "table inet appliance {") || !strings.Contains(out, "policy drop;") {
		t.Errorf("check must print the firewall in nft syntax, got:\n%s", out)
	}
}

func TestCheckRejectsBadConfigs(t *testing.T) {
	example, _, _ := runCLI("", "example-config")
	// Each case names the text that marks the bad line, so the test holds while the example grows.
	for _, tc := range []struct{ name, from, to, mark, want string }{
		{"unknown key", "sip_tls_port = 5061", "sip_tls_port = 5061\nsip_tsl_port = 5062", "sip_tsl_port", `pbx.sip_tsl_port: unknown setting "sip_tsl_port"`},
		{"bad address", `gateway = "198.51.100.1"`, `gateway = "198.51.100.300"`, "198.51.100.300", `uplink.primary.gateway: "198.51.100.300" is not an IP address`},
		{"world-open SIP", `networks = ["192.0.2.0/28", "2001:db8:100::/48"]`, `networks = ["0.0.0.0/0"]`, "0.0.0.0/0", `sip_peers.acme_trunk.networks: 0.0.0.0/0 opens SIP to the whole internet`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(example, tc.from) {
				t.Fatalf("test bug: %q not in the example", tc.from)
			}
			bad := strings.Replace(example, tc.from, tc.to, 1)
			line := 0
			for i, l := range strings.Split(bad, "\n") {
				if strings.Contains(l, tc.mark) && !strings.HasPrefix(strings.TrimSpace(l), "#") {
					line = i + 1
					break
				}
			}
			path := filepath.Join(t.TempDir(), "site.toml")
			if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "check", "--config", path)
			out, err := cmd.CombinedOutput()
			if err == nil || cmd.ProcessState.ExitCode() == 0 {
				t.Fatalf("check accepted the config:\n%s", out)
			}
			want := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(fmt.Sprintf("%s:%d:", path, line)) + "[0-9]+: " + regexp.QuoteMeta(tc.want))
			if !want.Match(out) {
				t.Errorf("check said:\n%s\nwant a line %s", out, want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, _, err := runCLI("", "version")
	if err != nil || !strings.HasPrefix(out, "appliance ") {
		t.Fatalf("version: %q, %v", out, err)
	}
}

// TestStaticBuilds checks what the Pi needs: a static arm64 ELF (no interpreter, no shared
// libraries), and that armv7 builds too.
func TestStaticBuilds(t *testing.T) {
	for _, target := range []struct{ arch, arm string }{{"arm64", ""}, {"arm", "7"}} {
		t.Run(target.arch+target.arm, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "appliance")
			cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+target.arch, "GOARM="+target.arm)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, b)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			want := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "arm": elf.EM_ARM}[target.arch]
			if f.Machine != want {
				t.Errorf("machine %v, want %v", f.Machine, want)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("not static: has %v program header", p.Type)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("links shared libraries %v", libs)
			}
		})
	}
}

func TestLabRefusesAPrefixThatIsAPath(t *testing.T) {
	// `lab down` removes /run/appliance-lab/PREFIX: a prefix with a path in it must be refused
	// before anything is touched (a harmless path here, should the check ever regress).
	for _, action := range []string{"up", "down", "status"} {
		_, _, err := runCLI("", "lab", action, "--prefix", "x/../y")
		if err == nil || !strings.Contains(err.Error(), "must be 1-12 of [a-z0-9]") {
			t.Errorf("lab %s --prefix x/../y: %v, want the prefix refused", action, err)
		}
	}
}
