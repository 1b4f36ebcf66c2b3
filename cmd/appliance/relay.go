package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/relay"
	"github.com/officeedge/appliance/netcfg"
)

func init() {
	commands["relay"] = command{"--config relay.toml [--state DIR]: run the voice relay on a public host; relay check|show on it, relay status on a box (docs/relay.md)", relayCmd}
}

const relayState = "/var/lib/appliance-relay"

func relayCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "status":
			return relayStatus(args[1:], stdout)
		case "show":
			return relayShow(args[1:], stdout)
		case "check":
			return relayCheck(args[1:], stdout)
		}
	}
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	path := fs.String("config", "/etc/appliance/relay.toml", "the relay's config file")
	state := fs.String("state", relayState, "directory for the relay's key, blocklist and records")
	socket := fs.String("control", "", "the relay's status socket (default STATE/control.sock)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("relay: unknown argument %q: relay --config FILE [--state DIR] runs the relay; relay check --config FILE checks it; "+
			"relay show [--json] prints a running relay's state; relay status [--json] prints a box's tunnel to its relay", pos[0])
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return relay.Run(ctx, relay.Options{ConfigPath: *path, StateDir: *state, ControlSocket: *socket, Log: log})
}

// relayShow prints a running relay's own state: its key, each office's tunnel and paths, its blocks.
func relayShow(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("relay show", flag.ContinueOnError)
	state := fs.String("state", relayState, "the relay's state directory")
	socket := fs.String("control", "", "the relay's status socket (default STATE/control.sock)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *socket == "" {
		*socket = filepath.Join(*state, "control.sock")
	}
	var st relay.Status
	if err := (control.Client{Socket: *socket, Timeout: 10 * time.Second}).GetJSON(relay.StatusPath, &st); err != nil {
		if errors.Is(err, control.ErrNotRunning) {
			return fmt.Errorf("relay show: no relay answers on %s: is appliance-relay running?", *socket)
		}
		return fmt.Errorf("relay show: %w", err)
	}
	return printStatus(stdout, *asJSON, st)
}

// relayStatus asks the box's daemon for its tunnel to the relay.
func relayStatus(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("relay status", flag.ContinueOnError)
	socket := controlFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	st, err := control.Client{Socket: *socket}.RelayStatus()
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "control" })
	if errors.Is(err, control.ErrNotRunning) && !explicit {
		// No box here: on the relay host itself, show the relay's own state.
		if _, serr := os.Stat(filepath.Join(relayState, "control.sock")); serr == nil {
			return relayShow([]string{fmt.Sprintf("--json=%t", *asJSON)}, stdout)
		}
	}
	if err != nil {
		return fmt.Errorf("relay status: %w", err)
	}
	return printStatus(stdout, *asJSON, st)
}

// printStatus prints a relay or tunnel status as indented JSON or as text for people.
func printStatus(stdout io.Writer, asJSON bool, st interface{ WriteText(io.Writer) }) error {
	if asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(st)
	}
	st.WriteText(stdout)
	return nil
}

// relayCheck validates relay.toml and prints the firewall the relay would apply, changing nothing.
func relayCheck(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("relay check", flag.ContinueOnError)
	path := fs.String("config", "/etc/appliance/relay.toml", "the relay's config file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := relay.LoadConfig(*path)
	if err != nil {
		return err
	}
	fw, err := c.Firewall()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s is valid: %d offices; this is the firewall it applies:\n", *path, len(c.Office))
	_, err = fmt.Fprint(stdout, netcfg.Build(fw).Text())
	return err
}
