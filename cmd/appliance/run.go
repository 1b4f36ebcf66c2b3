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
	"strings"
	"syscall"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/internal/version"
	"github.com/officeedge/appliance/netcfg"
)

const usage = `usage: appliance COMMAND [flags]

commands:
  run --config FILE          run the appliance (applies the firewall, keeps the box configured)
  check --config FILE        validate a config (- for stdin) and print the firewall it would apply
  example-config             print a complete, commented example config
  block ADDR [--for DUR]     block an address or network (e.g. 192.0.2.7, 192.0.2.0/24, --for 1h)
  unblock ADDR               remove an address or network from the blocklist
  blocked                    list blocked addresses and networks
  lab up|down|status         build and run the namespace lab (root)
  version                    print the version
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("appliance: no command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "--version":
		fmt.Fprintln(stdout, version.String())
		return nil
	case "example-config":
		_, err := stdout.Write(config.Example())
		return err
	case "check":
		return check(args, stdin, stdout, stderr)
	case "run":
		return runDaemon(args, stderr)
	case "block", "unblock", "blocked":
		return blocklist(cmd, args, stdout)
	case "lab":
		return labCmd(args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("appliance: unknown command %q", cmd)
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
	fmt.Fprint(stdout, "\n# config is valid; this is the firewall it applies:\n")
	fmt.Fprint(stdout, netcfg.Build(cfg).Text())
	return nil
}

func runDaemon(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "/etc/appliance/appliance.toml", "config file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return daemon.Run(ctx, daemon.Options{ConfigPath: *path, Log: log})
}

func blocklist(cmd string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	dur := fs.Duration("for", 0, "how long to block (e.g. 30m, 24h); 0 blocks until unblocked")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	fw := netcfg.New(0)
	if cmd == "blocked" {
		list, err := fw.Blocklist()
		if err != nil {
			return err
		}
		for _, b := range list {
			exp := "never"
			if b.Expires > 0 {
				exp = "in " + b.Expires.Round(time.Second).String()
			}
			fmt.Fprintf(stdout, "%-40s expires %s\n", b.Prefix, exp)
		}
		return nil
	}
	if len(pos) != 1 {
		return fmt.Errorf("%s: give one address or network", cmd)
	}
	var p config.Prefix
	if err := p.UnmarshalText([]byte(pos[0])); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if cmd == "unblock" {
		return fw.Unblock(p.Prefix)
	}
	if err := fw.Block(p.Prefix, *dur); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "blocked %s%s\n", p.Prefix, forText(*dur))
	return nil
}

func forText(d time.Duration) string {
	if d == 0 {
		return " until unblocked"
	}
	return " for " + d.String()
}

