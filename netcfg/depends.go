package netcfg

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/config"
)

// lookupDeadline bounds the resolution of all the names the box depends on, together: a
// reload never waits longer for DNS than this, however many names the config gives.
const lookupDeadline = 2 * time.Second

// dependency is a server the config names by host (or address) that the box needs, and why.
type dependency struct{ host, why string }

// dependencies lists the servers the box talks to by name: the SMTP server, the NTP servers,
// the CrowdSec LAPI, the backup destinations and the PBXes backups are pulled from, and the
// community feeds' servers. Each is protected, whatever asks for a block (a spoofed packet
// with one of their addresses must not cut the box off its mail, clock, fleet or backups).
func dependencies(cfg *config.Config) []dependency {
	var out []dependency
	hostPort := func(hp, why string) {
		h, _, err := net.SplitHostPort(hp)
		if err != nil {
			h = hp // no port
		}
		if h != "" {
			out = append(out, dependency{h, why})
		}
	}
	fromURL := func(raw, why string) {
		if u, err := url.Parse(raw); err == nil && u.Hostname() != "" {
			out = append(out, dependency{u.Hostname(), why})
		}
	}
	if cfg.Notify.Enabled() {
		hostPort(cfg.Notify.Server, "the SMTP server "+cfg.Notify.Server)
	}
	for _, s := range cfg.Time.Servers {
		hostPort(s, "the NTP server "+s+" ([time] servers)")
	}
	if cfg.CrowdSec.Enabled {
		fromURL(cfg.CrowdSec.URL, "the CrowdSec LAPI "+cfg.CrowdSec.URL)
	}
	if cfg.Backup.Enabled() {
		for _, d := range cfg.Backup.Destinations {
			switch d.Kind {
			case "s3":
				hostPort(d.Endpoint, "the backup destination "+d.Name+" (S3 "+d.Endpoint+")")
			default:
				hostPort(d.Address, "the backup destination "+d.Name+" (SFTP "+d.Address+")")
			}
		}
		for _, p := range cfg.Backup.PBX {
			if p.Mode == "pull" {
				hostPort(p.Address, "the PBX "+p.Name+" the box pulls backups from ("+p.Address+")")
			}
		}
	}
	if cfg.SIPGuard.Enabled {
		for _, f := range cfg.SIPGuard.Feeds {
			if f.URL != "" {
				fromURL(f.URL, "the server of community feed "+f.Name+" ("+f.URL+")")
			}
		}
	}
	return out
}

// lookupAll resolves each dependency's host (an address is taken as it is), all at once and
// within d; one that does not answer in time has no addresses.
func lookupAll(deps []dependency, d time.Duration) [][]netip.Addr {
	out := make([][]netip.Addr, len(deps))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for i, dep := range deps {
		if a, err := netip.ParseAddr(dep.host); err == nil {
			out[i] = []netip.Addr{a}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], _ = net.DefaultResolver.LookupNetIP(ctx, "ip", dep.host)
		}()
	}
	wg.Wait()
	return out
}

// LearnedResolvers are the protections for the DNS resolvers an uplink's DHCP lease named,
// for Owner.SetProtected: they change at run time, and the box's DNS stops without them.
func LearnedResolvers(uplink string, as []netip.Addr) []Protection {
	out := make([]Protection, 0, len(as))
	for _, a := range as {
		if a = a.Unmap(); a.IsValid() {
			out = append(out, Protection{Prefix: netip.PrefixFrom(a, a.BitLen()), Why: "a DNS resolver uplink " + uplink + "'s DHCP lease gave"})
		}
	}
	return out
}
