package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/wan"
)

func init() {
	commands["wan"] = command{"status [--json] | force backup|primary|auto | speedtest NAME: uplink health, manual override, a line's measured rates", wanCmd}
}

func wanCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("wan", flag.ContinueOnError)
	socket := controlFlag(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	c := control.Client{Socket: *socket}
	var st wan.Status
	switch {
	case len(pos) == 1 && pos[0] == "status":
		st, err = c.WANStatus()
	case len(pos) == 2 && pos[0] == "speedtest":
		return speedtestCmd(c, pos[1], *asJSON, stdout) // speedtest.go
	case len(pos) == 2 && pos[0] == "force":
		m, perr := wan.ParseMode(pos[1])
		if perr != nil {
			return perr
		}
		st, err = c.Force(control.ForceRequest{Mode: m, By: cliUser()})
	default:
		return fmt.Errorf("wan: use `wan status [--json]`, `wan force backup|primary|auto` or `wan speedtest NAME`")
	}
	if err != nil {
		return fmt.Errorf("wan: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(st) // as the daemon writes it
	}
	if len(pos) == 2 {
		fmt.Fprintf(stdout, "override set to %s\n\n", pos[1])
	}
	st.WriteText(stdout)
	return nil
}
