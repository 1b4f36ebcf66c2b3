package main

import (
	"flag"
	"io"

	"github.com/officeedge/appliance/internal/control"
)

func init() {
	commands["sipguard"] = command{"status: sipguard's counters (packets, SIP messages, findings, blocks)", func(args []string, _ io.Reader, stdout, _ io.Writer) error {
		fs := flag.NewFlagSet("sipguard", flag.ContinueOnError)
		socket := controlFlag(fs)
		if _, err := parse(fs, args); err != nil {
			return err
		}
		b, err := control.Client{Socket: *socket}.Get(control.PathSIPGuardStatus)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}}
}
