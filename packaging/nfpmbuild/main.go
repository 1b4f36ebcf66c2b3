// Command nfpmbuild makes the appliance's .deb from packaging/nfpm.yaml with the nfpm library.
//
// It lives in packaging/, a module of its own, so nfpm and its dependencies stay out of the
// appliance's go.mod. The yaml's ${VARS} come from the environment (set by scripts/build-deb).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

func main() {
	cfgPath := flag.String("config", "nfpm.yaml", "nfpm configuration")
	out := flag.String("out", ".", "directory for the package")
	flag.Parse()
	name, err := build(*cfgPath, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nfpmbuild:", err)
		os.Exit(1)
	}
	fmt.Println(name)
}

func build(cfgPath, out string) (string, error) {
	var unset []string
	cfg, err := nfpm.ParseFileWithEnvMapping(cfgPath, func(k string) string {
		v, ok := os.LookupEnv(k)
		// nfpm also asks for its signing passphrases: no signing here.
		if !ok && !strings.HasPrefix(k, "NFPM_") {
			unset = append(unset, k)
		}
		return v
	})
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", cfgPath, err)
	}
	if len(unset) > 0 {
		// A missing variable would silently make an empty field: refuse instead.
		return "", fmt.Errorf("%s: environment variables not set: %v", cfgPath, unset)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("prepare: %w", err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	path := filepath.Join(out, pkg.ConventionalFileName(info))
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("package: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return path, os.Rename(tmp, path)
}
