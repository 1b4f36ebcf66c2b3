package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/officeedge/appliance/internal/audit"
	"github.com/officeedge/appliance/internal/control"
)

func init() {
	commands["audit"] = command{"export [--state DIR]: print the audit log as CSV", auditCmd}
}

func auditCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	state := fs.String("state", "/var/lib/appliance", "the daemon's state directory (read directly when the daemon is not running)")
	socket := controlFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "export" {
		return errors.New("audit: say `appliance audit export`")
	}
	b, err := control.Client{Socket: *socket}.Get(control.PathAuditExport)
	if err == nil {
		_, err = stdout.Write(b)
		return err
	}
	// The log is a plain file: it can be read with the daemon stopped too.
	path := filepath.Join(*state, "audit.log")
	if _, serr := os.Stat(path); serr != nil {
		return fmt.Errorf("audit: the daemon does not answer (%v) and there is no %s", err, path)
	}
	fmt.Fprintf(stderr, "audit: the daemon does not answer; reading %s\n", path)
	es, err := audit.Read(path)
	if err != nil {
		return err
	}
	return audit.WriteCSV(stdout, es)
}

// auditCLI records a command-line action through the running daemon. It is best effort: the
// action has happened already, and a stopped daemon must not make it fail.
func auditCLI(socket, what, before, after string) {
	_ = control.Client{Socket: socket}.Record(audit.Entry{Who: cliUser(), From: "console", What: what, Before: before, After: after})
}

// auditOffline records a command-line action in the audit log itself, for when no daemon
// runs to do it (the log is an append-only file in the state directory).
func auditOffline(state string, stderr io.Writer, what, before, after string) {
	e := audit.Entry{Who: cliUser(), From: "console", Via: "cli (no daemon)", What: what, Before: before, After: after}
	if err := audit.Open(filepath.Join(state, "audit.log")).Record(e); err != nil {
		fmt.Fprintf(stderr, "audit: %v\n", err)
	}
}
