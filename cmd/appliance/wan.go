package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/wan"
)

func init() {
	commands["wan"] = command{"status [--json] | force backup|primary|auto: uplink health and manual override", wanCmd}
}

func wanCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("wan", flag.ContinueOnError)
	control := controlFlag(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	var body []byte
	switch {
	case len(pos) == 1 && pos[0] == "status":
		body, err = daemon.Call(*control, "GET", "/wan/status", nil)
	case len(pos) == 2 && pos[0] == "force":
		if _, err := wan.ParseMode(pos[1]); err != nil {
			return err
		}
		body, err = daemon.Call(*control, "POST", "/wan/force?who="+url.QueryEscape(cliUser()), strings.NewReader(pos[1]))
	default:
		return fmt.Errorf("wan: use `wan status [--json]` or `wan force backup|primary|auto`")
	}
	if err != nil {
		return fmt.Errorf("wan: %w", err)
	}
	if *asJSON {
		_, err = stdout.Write(body)
		return err
	}
	var st wan.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("wan: status: %w", err)
	}
	if len(pos) == 2 {
		fmt.Fprintf(stdout, "override set to %s\n\n", pos[1])
	}
	st.WriteText(stdout)
	return nil
}
