package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"path/filepath"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// block, unblock and blocked work on the kernel's blocklist directly, so they work whether
// the daemon runs or not; with a daemon, sipguard adds why and since when, and forgets an
// unblocked source so that its next start does not bring the block back.
func init() {
	commands["block"] = command{"ADDR [--for DUR]: block an address or network (192.0.2.7, 192.0.2.0/24; --for 1h)", blockCmd}
	commands["unblock"] = command{"ADDR: remove an address or network from the blocklist", unblockCmd}
	commands["blocked"] = command{"list blocked addresses: reason, since, expiry, packets dropped", blockedCmd}
}

// addrArg parses the one address or network a command takes.
func addrArg(cmd string, pos []string) (netip.Prefix, error) {
	if len(pos) != 1 {
		return netip.Prefix{}, fmt.Errorf("%s: give one address or network", cmd)
	}
	var p config.Prefix
	if err := p.UnmarshalText([]byte(pos[0])); err != nil {
		return netip.Prefix{}, fmt.Errorf("%s: %w", cmd, err)
	}
	return p.Masked(), nil
}

func blockCmd(args []string, _ io.Reader, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("block", flag.ContinueOnError)
	dur := fs.Duration("for", 0, "how long to block (e.g. 30m, 24h); 0 blocks until unblocked")
	control := controlFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	p, err := addrArg("block", pos)
	if err != nil {
		return err
	}
	if err := netcfg.New(0).Block(p, *dur); err != nil {
		return err
	}
	auditCLI(*control, "block", "", prefixText(p)+forText(*dur))
	fmt.Fprintf(stdout, "blocked %s%s\n", prefixText(p), forText(*dur))
	return nil
}

func unblockCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("unblock", flag.ContinueOnError)
	control := controlFlag(fs)
	state := fs.String("state", "/var/lib/appliance", "the daemon's state directory")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	p, err := addrArg("unblock", pos)
	if err != nil {
		return err
	}
	kernelErr := netcfg.New(0).Unblock(p)
	// The daemon forgets its entry (and its counters of that source). Without a daemon the
	// entry is taken out of its state file, so a start does not bring the block back.
	_, derr := daemon.Call(*control, "POST", "/sipguard/unblock?addr="+url.QueryEscape(p.String()), nil)
	forgot := derr == nil
	if !forgot {
		had, err := sipguard.ForgetPersisted(filepath.Join(*state, "sipguard"), p)
		if err != nil {
			fmt.Fprintf(stderr, "sipguard state: %v\n", err)
		}
		forgot = had
	}
	if kernelErr != nil && !forgot {
		return kernelErr
	}
	auditCLI(*control, "unblock", prefixText(p), "")
	fmt.Fprintf(stdout, "unblocked %s\n", prefixText(p))
	return nil
}

func blockedCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
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
		fmt.Fprintf(stdout, "%-40s %-26s %-20s %-20s %d\n", prefixText(e.Prefix), e.Reason, since, exp, e.Dropped)
	}
	return nil
}

// prefixText shows a single address without its /32 or /128.
func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func forText(d time.Duration) string {
	if d == 0 {
		return " until unblocked"
	}
	return " for " + d.String()
}
