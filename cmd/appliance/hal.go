package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"

	"github.com/officeedge/appliance/internal/control"
)

func init() {
	commands["button"] = command{"press [--long]: press the simulated button (lab and development boards)", buttonCmd}
}

func buttonCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("button", flag.ContinueOnError)
	long := fs.Bool("long", false, "hold it for the long press (returns to automatic and acknowledges alerts)")
	socket := controlFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "press" {
		return errors.New("button: say `appliance button press [--long]`")
	}
	a, err := control.Client{Socket: *socket}.Press(control.ButtonRequest{Long: *long, By: cliUser()})
	if err != nil {
		return fmt.Errorf("button: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "pressed the simulated button (%s)\n", a.Pressed)
	return err
}

// cliUser is who runs the command, for the audit log: the user behind sudo if there is one.
func cliUser() string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	if u, err := user.LookupId(fmt.Sprint(os.Getuid())); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}
