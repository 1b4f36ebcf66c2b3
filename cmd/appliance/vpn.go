package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"

	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/store"
)

func init() {
	commands["vpn"] = command{"rotate NAME [--out FILE]: give a VPN peer a new key pair (the old one stops working at once) and print its new config", vpnCmd}
}

// vpnCmd asks the running daemon, which holds the WireGuard interface: a key changed behind
// its back would leave the old one working until the next reconcile.
func vpnCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		return fmt.Errorf("vpn: usage: appliance vpn rotate NAME [--out FILE]")
	}
	fs := flag.NewFlagSet("vpn rotate", flag.ContinueOnError)
	socket := controlFlag(fs)
	out := fs.String("out", "", "write the new config to FILE (mode 0600) instead of printing it")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("vpn rotate: give one peer name (a [vpn.peers.NAME] of the config)")
	}
	q := url.Values{"name": {pos[0]}, "who": {cliUser()}}
	conf, err := control.Client{Socket: *socket}.PostQuery(control.PathVPNRotate, q) // the daemon audits it
	if err != nil {
		return fmt.Errorf("vpn rotate %s: %w", pos[0], err)
	}
	fmt.Fprintf(stderr, "%s has a new key pair: the old config no longer connects; import this one on the phone\n", pos[0])
	if *out != "" {
		return store.WriteFile(*out, conf, 0o600) // it holds the phone's private key
	}
	_, err = stdout.Write(conf)
	return err
}
