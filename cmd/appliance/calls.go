package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/officeedge/appliance/internal/calls"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/daemon"
)

func init() {
	commands["calls"] = command{"[--json]: the calls now (loss, jitter, MOS each way) and the last 24 h with their worst minute", callsCmd}
}

func callsCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("calls", flag.ContinueOnError)
	socket := controlFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	cfgPath := fs.String("config", "/etc/appliance/appliance.toml", "the daemon's config (times are written in its site's zone)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return errors.New("calls: use `calls [--json]`")
	}
	body, err := control.Client{Socket: *socket}.Get(daemon.PathCallsStatus)
	if err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	if *asJSON {
		_, err = stdout.Write(body)
		return err
	}
	var st calls.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	st.WriteText(stdout, siteZone(*cfgPath).Location())
	return nil
}
