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
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *writable != "" {
		var err error
		if *path, err = cfgedit.Seed(*path, *writable); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return daemon.Run(ctx, daemon.Options{ConfigPath: *path, StateDir: *state, ControlSocket: *socket, Log: log, ConfirmWindow: *confirm})
}

// controlFlag is the --control flag of commands that talk to the running daemon.
func controlFlag(fs *flag.FlagSet) *string {
	return fs.String("control", control.DefaultSocket, "the daemon's control socket")
}
