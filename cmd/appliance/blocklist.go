package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// block, unblock and blocked go through the daemon's firewall owner when it runs (the one
// writer of the kernel's blocklist), and work on the kernel and the saved blocklist directly
// when it does not, so that the next start keeps what was done.
func init() {
	commands["block"] = command{"ADDR [--for DUR] [--force]: block an address or network (192.0.2.7, 192.0.2.0/24; --for 1h)", blockCmd}
	commands["unblock"] = command{"ADDR: remove an address or network from the blocklist", unblockCmd}
	commands["blocked"] = command{"list blocked addresses: source, since, expiry, packets dropped, reason", blockedCmd}
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

// offlineFlags are where the daemon keeps its state and config, for when it is not running.
func offlineFlags(fs *flag.FlagSet) (state, cfg *string) {
	return fs.String("state", "/var/lib/appliance", "the daemon's state directory"),
		fs.String("config", "/etc/appliance/appliance.toml", "the daemon's config (for what is protected)")
}

func blockCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("block", flag.ContinueOnError)
	dur := fs.Duration("for", 0, "how long to block (e.g. 30m, 24h); 0 blocks until unblocked")
	force := fs.Bool("force", false, "block a network wider than [blocklist] widest4/widest6 allows")
	reason := fs.String("reason", "blocked by hand", "why, shown in the listing")
	socket := controlFlag(fs)
	state, cfgPath := offlineFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	p, err := addrArg("block", pos)
	if err != nil {
		return err
	}
	req := control.BlockRequest{Prefix: config.Prefix{Prefix: p}, For: *dur, Force: *force, By: cliUser(), Reason: *reason}
	_, derr := control.Client{Socket: *socket}.Block(req) // the daemon audits it
	if isNotRunning(derr) {
		fmt.Fprintf(stderr, "the daemon is not running: blocking in the kernel and the saved blocklist (%s) directly\n", *state)
		cfg, cerr := config.Load(*cfgPath)
		if cerr != nil {
			fmt.Fprintf(stderr, "its config does not load (%v): only trusted peers and admin networks in the kernel are checked\n", cerr)
			cfg = nil
		}
		_, derr = netcfg.BlockOffline(netcfg.New(0), *state, cfg, netcfg.BlockRequest{Prefix: p, Source: netcfg.SourceManual, By: cliUser() + " (cli)", Reason: *reason, For: *dur, Force: *force})
		if derr == nil {
			auditOffline(*state, stderr, "block", "", control.BlockRecord(p, *dur, *reason))
		}
	}
	if derr != nil {
		return fmt.Errorf("block: %w", derr)
	}
	fmt.Fprintf(stdout, "blocked %s%s\n", control.PrefixText(p), forText(*dur))
	return nil
}

func unblockCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("unblock", flag.ContinueOnError)
	socket := controlFlag(fs)
	state, _ := offlineFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	p, err := addrArg("unblock", pos)
	if err != nil {
		return err
	}
	_, derr := control.Client{Socket: *socket}.Unblock(control.UnblockRequest{Prefix: config.Prefix{Prefix: p}, By: cliUser()})
	if isNotRunning(derr) {
		fmt.Fprintf(stderr, "the daemon is not running: unblocking in the kernel and the saved blocklist (%s) directly\n", *state)
		if derr = netcfg.UnblockOffline(netcfg.New(0), *state, p); derr == nil {
			auditOffline(*state, stderr, "unblock", control.PrefixText(p), "")
		}
		// sipguard's own record of the source goes too, so its counters start afresh.
		if _, err := sipguard.ForgetPersisted(filepath.Join(*state, "sipguard"), p); err != nil {
			fmt.Fprintf(stderr, "sipguard state: %v\n", err)
		}
	}
	if derr != nil {
		return fmt.Errorf("unblock: %w", derr)
	}
	fmt.Fprintf(stdout, "unblocked %s\n", control.PrefixText(p))
	return nil
}

// isNotRunning tells a daemon that does not answer from one that refused the request.
func isNotRunning(err error) bool {
	return errors.Is(err, control.ErrNotRunning)
}

// listing is what `appliance blocked` prints: the entries with a claim other than a feed's,
// then one line per community list.
type listing struct {
	entries []netcfg.Entry
	feeds   []netcfg.FeedInfo
	packets map[netip.Prefix]uint64
	left    map[netip.Prefix]time.Duration // the kernel's time left; absent: not in the kernel
}

func blockedCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("blocked", flag.ContinueOnError)
	socket := controlFlag(fs)
	state, cfgPath := offlineFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	site := siteZone(*cfgPath)
	var l listing
	v, err := control.Client{Socket: *socket}.Blocklist()
	if err == nil && v.State == nil {
		err = errors.New("the daemon's answer has no blocklist")
	}
	if err == nil {
		l = listing{entries: v.State.Entries, feeds: v.State.Feeds, packets: v.PacketsByPrefix()}
	}
	if err != nil {
		fmt.Fprintf(stderr, "appliance daemon not answering (%v): showing the saved blocklist and the kernel's list\n", err)
		if l, err = offlineListing(*state); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%-40s %-10s %-24s %-24s %-8s %s\n", "ADDRESS", "SOURCE", "SINCE", "EXPIRES", "DROPPED", "REASON")
	for _, e := range l.entries {
		since, exp := site.Stamp(e.Since()), site.Stamp(e.Until())
		if l.left != nil {
			if _, in := l.left[e.Prefix]; !in {
				exp = "not in kernel"
			}
		}
		fmt.Fprintf(stdout, "%-40s %-10s %-24s %-24s %-8d %s\n", control.PrefixText(e.Prefix), strings.Join(e.Sources(), ","), since, exp, l.packets[e.Prefix], e.Reason())
	}
	for _, f := range l.feeds {
		fmt.Fprintf(stdout, "community list %s: %d entries (%d left out), loaded %s, kept until %s\n", f.Name, f.Entries, f.Refused,
			site.Stamp(f.Loaded), site.Stamp(f.Until))
	}
	return nil
}

// offlineListing is the saved blocklist with what the kernel has of it; without a saved
// blocklist, the kernel's own list.
func offlineListing(dir string) (listing, error) {
	fw := netcfg.New(0)
	st, err := netcfg.SavedBlocklist(dir)
	if err != nil {
		return listing{}, err
	}
	l := listing{entries: st.Entries, feeds: st.Feeds, packets: map[netip.Prefix]uint64{}, left: map[netip.Prefix]time.Duration{}}
	if len(st.Entries) == 0 && len(st.Feeds) == 0 {
		kl, err := fw.Blocklist()
		if err != nil {
			return listing{}, err
		}
		now := time.Now()
		for _, k := range kl {
			c := netcfg.Claim{Source: "kernel", Reason: "-", Since: now}
			if k.Expires > 0 {
				c.Until = now.Add(k.Expires)
			}
			l.entries = append(l.entries, netcfg.Entry{Prefix: k.Prefix, Claims: []netcfg.Claim{c}})
			l.packets[k.Prefix], l.left[k.Prefix] = k.Packets, k.Expires
		}
		return l, nil
	}
	ps := make([]netip.Prefix, 0, len(st.Entries))
	for _, e := range st.Entries {
		ps = append(ps, e.Prefix)
	}
	found, err := fw.Lookup(ps)
	if err != nil {
		return listing{}, err
	}
	for p, b := range found {
		l.packets[p], l.left[p] = b.Packets, b.Expires
	}
	return l, nil
}

func forText(d time.Duration) string {
	if d == 0 {
		return " until unblocked"
	}
	return " for " + d.String()
}
