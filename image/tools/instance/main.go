// Command instance writes a buildable gokrazy instance from one of image/'s templates: it
// bakes the site config (none: a generic image, which boots into the setup state), the
// version, the update password and the kernel package into the template's config.json.
//
// It is a program rather than sed in the build script because the site config goes into
// config.json as a JSON string (gokrazy's ExtraFileContents), which needs proper escaping.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

const (
	appliancePkg = "github.com/officeedge/appliance/cmd/appliance"
	versionPkg   = "github.com/officeedge/appliance/internal/version"
	// ConfigPath is where the image carries the site config (read-only root file system).
	configPath = "/etc/appliance/appliance.toml"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "instance:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		template  = flag.String("template", "", "the instance's config.json in image/")
		out       = flag.String("out", "", "where to write the filled-in config.json")
		siteCfg   = flag.String("config", "", "the site config (TOML) to bake in")
		version   = flag.String("version", "dev", "version string for the binary")
		buildTime = flag.String("build-time", "unknown", "build time for the binary")
		password  = flag.String("password-file", "", "file holding the password of gokrazy's update API")
		updateURL = flag.String("update-url", "", "base URL of a running box to update (gok update), without credentials")
		kernelPkg = flag.String("kernel-package", "", "the kernel's Go package (default: the template's, gokrazy's stock kernel)")
	)
	flag.Parse()
	if *template == "" || *out == "" || *password == "" {
		return fmt.Errorf("-template, -out and -password-file are required")
	}
	raw, err := os.ReadFile(*template)
	if err != nil {
		return err
	}
	var inst map[string]any
	if err := json.Unmarshal(raw, &inst); err != nil {
		return fmt.Errorf("%s: %w", *template, err)
	}
	pwRaw, err := os.ReadFile(*password)
	if err != nil {
		return err
	}
	pw := strings.TrimSpace(string(pwRaw))
	if pw == "" || strings.ContainsAny(pw, "@:/?# ") {
		return fmt.Errorf("%s: the password must be non-empty and URL-safe", *password)
	}

	update := object(inst, "Update")
	update["HTTPPassword"] = pw
	pc := object(object(inst, "PackageConfig"), appliancePkg)
	if *siteCfg != "" {
		site, err := os.ReadFile(*siteCfg)
		if err != nil {
			return err
		}
		object(pc, "ExtraFileContents")[configPath] = string(site)
	}
	if *kernelPkg != "" {
		inst["KernelPackage"] = *kernelPkg
	}
	pc["GoBuildFlags"] = []string{
		"-trimpath",
		fmt.Sprintf("-ldflags=-s -w -X %s.Version=%s -X %s.BuildTime=%s", versionPkg, *version, versionPkg, *buildTime),
	}
	if *updateURL != "" {
		u := strings.TrimSuffix(*updateURL, "/")
		scheme, rest, ok := strings.Cut(u, "://")
		if !ok {
			return fmt.Errorf("-update-url %q: want http://HOST[:PORT]", *updateURL)
		}
		// gok reads a full update URL (with credentials) from this field only.
		object(inst, "InternalCompatibilityFlags")["Update"] = scheme + "://gokrazy:" + pw + "@" + rest + "/"
	}
	b, err := json.MarshalIndent(inst, "", "    ")
	if err != nil {
		return err
	}
	return os.WriteFile(*out, append(b, '\n'), 0o600)
}

// object returns m[key] as a JSON object, creating it when absent.
func object(m map[string]any, key string) map[string]any {
	if o, ok := m[key].(map[string]any); ok {
		return o
	}
	o := map[string]any{}
	m[key] = o
	return o
}
