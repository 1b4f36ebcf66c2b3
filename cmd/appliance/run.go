package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/officeedge/appliance/internal/cfgedit"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/internal/peers"
	"github.com/officeedge/appliance/internal/setup"
	"github.com/officeedge/appliance/internal/version"
	"github.com/officeedge/appliance/netcfg"
)

// command is one `appliance` subcommand; files of this package add theirs in init.
type command struct {
	summary string // one line for the usage text, after the name
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func init() {
	commands["version"] = command{"print the version", func(_ []string, _ io.Reader, stdout, _ io.Writer) error {
		_, err := fmt.Fprintln(stdout, version.String())
		return err
	}}
	commands["example-config"] = command{"print a complete, commented example config", func(_ []string, _ io.Reader, stdout, _ io.Writer) error {
		_, err := stdout.Write(config.Example())
		return err
	}}
	commands["check"] = command{"--config FILE: validate a config (- for stdin) and print the firewall it would apply", check}
	commands["run"] = command{"--config FILE [--state DIR]: run the appliance", runDaemon}
	commands["lab"] = command{"up|down|status [--prefix P]: build and run the namespace lab (root)", func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
		return labCmd(args, stdout, stderr)
	}}
}

func usage() string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: appliance COMMAND [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-15s %s\n", n, commands[n].summary)
	}
	return b.String()
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return errors.New("appliance: no command")
	}
	name, args := strings.TrimPrefix(args[0], "--"), args[1:]
	if name == "help" || name == "-h" || name == "h" {
		fmt.Fprint(stdout, usage())
		return nil
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprint(stderr, usage())
		return fmt.Errorf("appliance: unknown command %q", name)
	}
	return c.run(args, stdin, stdout, stderr)
}

// parse parses flags that may stand before or after the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func check(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("config", "/etc/appliance/appliance.toml", "config file, - for standard input")
	socket := controlFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var (
		cfg *config.Config
		err error
	)
	if *path == "-" {
		data, rerr := io.ReadAll(stdin)
		if rerr != nil {
			return fmt.Errorf("check: read stdin: %w", rerr)
		}
		cfg, err = config.Parse("<stdin>", data)
	} else {
		cfg, err = config.Load(*path)
	}
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stdout, "# %s", strings.ReplaceAll(strings.TrimSpace(netcfg.Describe(cfg)), "\n", "\n# "))
	printHostNames(stdout, cfg, *socket)
	fmt.Fprint(stdout, "\n# config is valid; this is the firewall it applies:\n")
	fmt.Fprint(stdout, netcfg.Build(cfg).Text())
	return nil
}

// printHostNames lists the trusted host names with what the running daemon resolved them to
// (the firewall below has only the networks: the names' addresses join them at run time).
func printHostNames(w io.Writer, cfg *config.Config, socket string) {
	var hosts []string
	for _, n := range config.SortedNames(cfg.SIPPeers) {
		for _, h := range cfg.SIPPeers[n].Hosts {
			hosts = append(hosts, h+" (sip_peers."+n+")")
		}
	}
	for _, h := range cfg.Admin.Hosts {
		hosts = append(hosts, h+" (admin)")
	}
	if len(hosts) == 0 {
		return
	}
	var names []peers.Name
	err := control.Client{Socket: socket}.GetJSON(control.PathPeersStatus, &names)
	if err != nil {
		fmt.Fprintf(w, "\n# trusted host names (the daemon is not answering, so not resolved here): %s", strings.Join(hosts, ", "))
		return
	}
	fmt.Fprint(w, "\n# trusted host names, as the running daemon resolved them:")
	for _, n := range names {
		when := "never resolved"
		if !n.Resolved.IsZero() {
			when = "resolved " + cfg.Stamp(n.Resolved) + ", next " + cfg.Stamp(n.Next)
		}
		addrs := make([]string, len(n.Addrs))
		for i, a := range n.Addrs {
			addrs[i] = a.String()
		}
		line := fmt.Sprintf("\n#   %s (%s): %s (%s)", n.Host, n.Key, strings.Join(addrs, ", "), when)
		if n.Error != "" {
			line += "; last lookup failed: " + n.Error
		}
		fmt.Fprint(w, line)
	}
}

func runDaemon(args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "/etc/appliance/appliance.toml", "config file")
	state := fs.String("state", "/var/lib/appliance", "directory for state that survives reboots")
	socket := controlFlag(fs)
	confirm := fs.Duration("confirm-window", 0, "time to confirm a config change made on the status page before it is put back (default 2m)")
	writable := fs.String("writable-config", "", "run from a writable copy of --config at this path (on the image: /perm/appliance/appliance.toml), made again when --config changes")
	setupMode := fs.Bool("setup", false, "the box may have to set itself up: take appliance.toml from the boot partition, and without any config serve the setup page on the LAN (docs/setup.md); needs --writable-config")
	bootDir := fs.String("boot-dir", "", "with --setup: the boot partition, already mounted (default: find and mount it at "+setup.BootMount+")")
	setupLAN := fs.String("setup-lan", "eth0", "with --setup: the LAN interface of the setup state")
	console := fs.String("setup-console", "/dev/console", "with --setup: where the setup code is printed besides the log (\"\": the log only)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if !*setupMode {
		if *writable != "" {
			var err error
			if *path, err = cfgedit.Seed(*path, *writable); err != nil {
				return err
			}
		}
		return daemon.Run(ctx, daemon.Options{ConfigPath: *path, StateDir: *state, ControlSocket: *socket, Log: log, ConfirmWindow: *confirm})
	}
	if *writable == "" {
		return errors.New("run: --setup needs --writable-config (where the box keeps the config it is given)")
	}
	if _, err := os.Stat(*path); errors.Is(err, os.ErrNotExist) {
		// A generic image (no config baked in): its update password is every box's.
		rebooting, err := setup.GokrazyUpdatePassword(log).Ensure(ctx)
		if err != nil {
			log.Error("setup", "err", err)
		} else if rebooting {
			<-ctx.Done() // gokrazy stops the process for the reboot
			return nil
		}
	}
	// The setup loop: a config from the boot partition, else the one there is, else the setup
	// state until one is written; a first config not confirmed in time brings it back.
	var con io.Writer
	for {
		bootErrs := importBoot(*bootDir, *path, *writable, *state, log)
		cfgPath, err := chooseConfig(*path, *writable)
		if err != nil {
			return err
		}
		if cfgPath == "" {
			if con == nil {
				con = openConsole(*console, log)
			}
			err := setup.Serve(ctx, setup.Options{LAN: *setupLAN, ConfigPath: *writable, StateDir: *state, ConfirmWindow: *confirm,
				BootErrors: bootErrs, Version: version.Version, Log: log, Console: con})
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		err = daemon.Run(ctx, daemon.Options{ConfigPath: cfgPath, StateDir: *state, ControlSocket: *socket, Log: log, ConfirmWindow: *confirm})
		if !errors.Is(err, daemon.ErrSetup) {
			return err
		}
	}
}

// importBoot takes what the person put on the boot partition (setup.Import) and returns the
// errors of a config rejected there, for the setup page. The partition is found and mounted
// unless dir is given; a box without one (a .deb install) just has nothing to import.
func importBoot(dir, baked, writable, state string, log *slog.Logger) []string {
	if dir == "" {
		unmount, err := setup.MountBoot(setup.BootMount)
		if err != nil {
			log.Info("no boot partition to take a config from", "err", err)
			return nil
		}
		defer func() {
			if err := unmount(); err != nil {
				log.Error("boot partition", "err", err)
			}
		}()
		dir = setup.BootMount
	}
	im, err := setup.Import(setup.ImportOptions{Dir: dir, Baked: baked, Writable: writable, StateDir: state, Log: log})
	if err != nil {
		log.Error("boot partition", "err", err)
	}
	return im.Errors
}

// chooseConfig is the config to run from: with one baked into the image, its writable copy
// (cfgedit.Seed: the page's edits stand while the image's config is unchanged); else the
// writable config; else "" (the setup state).
func chooseConfig(baked, writable string) (string, error) {
	if _, err := os.Stat(baked); err == nil {
		return cfgedit.Seed(baked, writable)
	}
	if _, err := os.Stat(writable); err == nil {
		return writable, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("run: %w", err)
	}
	return "", nil
}

// openConsole opens the console for the setup code's line, once for the process; io.Discard
// (the log only) if it can't.
func openConsole(path string, log *slog.Logger) io.Writer {
	if path == "" {
		return io.Discard
	}
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		log.Warn("setup: the console cannot be written: the setup code is in the log only", "console", path, "err", err)
		return io.Discard
	}
	return f
}

// controlFlag is the --control flag of commands that talk to the running daemon.
func controlFlag(fs *flag.FlagSet) *string {
	return fs.String("control", control.DefaultSocket, "the daemon's control socket")
}
