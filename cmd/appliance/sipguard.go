package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// This file re-registers `blocked` and wraps `unblock`, both first defined in run.go (this
// init runs after run.go's: a package's files initialise in name order). `blocked` asks the
// running daemon, so the listing shows why and since when an address is blocked, and falls
// back to the kernel's list without a daemon. `unblock` runs run.go's command unchanged, then
// tells the daemon's sipguard to forget the entry, which would otherwise be restored into
// the kernel at the next start.
func init() {
	orig := commands["unblock"]
	commands["blocked"] = command{"list blocked addresses: reason, since, expiry, packets dropped", func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
		return blockedCmd(args, stdout, stderr)
	}}
	commands["unblock"] = command{orig.summary, func(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
		return unblockCmd(orig, args, stdin, stdout, stderr)
	}}
	commands["sipguard"] = command{"status: sipguard's counters (packets, SIP messages, findings, blocks)", func(args []string, _ io.Reader, stdout, _ io.Writer) error {
		fs := flag.NewFlagSet("sipguard", flag.ContinueOnError)
		control := controlFlag(fs)
		if _, err := parse(fs, args); err != nil {
			return err
		}
		b, err := daemon.Call(*control, "GET", "/sipguard/status", nil)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}}
}

func blockedCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("blocked", flag.ContinueOnError)
	control := controlFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var list []sipguard.Entry
	b, err := daemon.Call(*control, "GET", "/sipguard/blocked", nil)
	if err == nil {
		err = json.Unmarshal(b, &list)
	}
	if err != nil {
		fmt.Fprintf(stderr, "appliance daemon not answering (%v): showing the kernel's list only\n", err)
		kl, kerr := netcfg.New(0).Blocklist()
		if kerr != nil {
			return kerr
		}
		list = nil
		for _, k := range kl {
			e := sipguard.Entry{Prefix: k.Prefix, Reason: "-", Dropped: k.Packets, InKernel: true}
			if k.Expires > 0 {
				e.Expires = time.Now().Add(k.Expires)
			}
			list = append(list, e)
		}
	}
	fmt.Fprintf(stdout, "%-40s %-26s %-20s %-20s %s\n", "ADDRESS", "REASON", "SINCE (UTC)", "EXPIRES (UTC)", "DROPPED")
	for _, e := range list {
		since, exp := "-", "never"
		if !e.Since.IsZero() {
			since = e.Since.UTC().Format("2006-01-02 15:04:05")
		}
		if !e.Expires.IsZero() {
			exp = e.Expires.UTC().Format("2006-01-02 15:04:05")
		}
		if !e.InKernel {
			exp = "not in kernel"
		}
		fmt.Fprintf(stdout, "%-40s %-26s %-20s %-20s %d\n", e.Prefix, e.Reason, since, exp, e.Dropped)
	}
	return nil
}

func unblockCmd(orig command, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	kernelErr := orig.run(args, stdin, stdout, stderr)
	fs := flag.NewFlagSet("unblock", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Duration("for", 0, "")
	control := controlFlag(fs)
	state := fs.String("state", "/var/lib/appliance", "the daemon's state directory")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 {
		return kernelErr
	}
	var p config.Prefix
	if err := p.UnmarshalText([]byte(pos[0])); err != nil {
		return kernelErr
	}
	// The daemon forgets its entry (and its counters of that source). Without a daemon the
	// entry is taken out of its state file, so a start does not bring the block back.
	if _, err := daemon.Call(*control, "POST", "/sipguard/unblock?addr="+url.QueryEscape(p.Prefix.String()), nil); err == nil {
		return nil
	}
	had, err := sipguard.ForgetPersisted(filepath.Join(*state, "sipguard"), p.Prefix)
	if err != nil {
		fmt.Fprintf(stderr, "sipguard state: %v\n", err)
	}
	if had {
		return nil
	}
	return kernelErr
}
