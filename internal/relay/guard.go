package relay

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// newGuard makes sipguard for the relay's public side, as the box makes its own
// (sipguard.OptionsFrom), blocking through the relay's firewall owner. It reads the public
// interface, not voice0 as a box reads its LAN: a scanner's SIP never crosses voice0 (the
// forward chain drops SIP from outside the trunk networks), so only there is it seen.
// Every office's trunks are trusted, not only the first one's (the made config's SIP peers).
// The relay's own addresses are local, as a box's LAN is: the PBXs' own requests leave
// from them (masqueraded), and a PBX's failed registration with its trunk must never make
// the relay block itself.
func newGuard(c *Config, cfg *config.Config, owner *netcfg.Owner, stateDir string, log *slog.Logger) (*sipguard.Guard, error) {
	o := sipguard.OptionsFrom(cfg)
	own := interfaceAddrs(c.PublicInterface)
	if c.PublicAddress.IsValid() {
		own = append(own, c.PublicAddress.Addr)
	}
	for _, a := range own {
		o.Thresholds.Local = append(o.Thresholds.Local, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, n := range c.Names()[1:] {
		for _, p := range c.Office[n].TrunkNetworks {
			o.Thresholds.Trusted = append(o.Thresholds.Trusted, p.Prefix)
		}
	}
	o.Blocker, o.Log = owner, log
	if stateDir != "" {
		o.StateDir = filepath.Join(stateDir, "sipguard")
	}
	return sipguard.New(o)
}

// sipPorts are the offices' public SIP ports, which sipguard reads.
func (c *Config) sipPorts() []uint16 {
	var out []uint16
	for _, n := range c.Names() {
		out = append(out, uint16(c.Office[n].SIPPort))
	}
	return out
}

// runGuard captures on the public interface and works through findings until ctx ends; a
// capture that fails ends it with its error, for the supervisor to restart.
func runGuard(ctx context.Context, g *sipguard.Guard, iface string, ports []uint16) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.Run(ctx) }()
	err := sipguard.Capture(ctx, iface, ports, g)
	cancel()
	wg.Wait()
	return err
}
