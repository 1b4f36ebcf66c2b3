// Package daemon runs the appliance: it reconciles the box to its configuration and keeps it there.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
)

// Options are the daemon's command-line settings.
type Options struct {
	ConfigPath string
	Log        *slog.Logger
}

// Run applies the configuration and serves until ctx ends. The firewall stays in the kernel
// when it returns, or if the process dies: the box fails closed. SIGHUP reloads the file; a
// bad file is reported and the running firewall stays as it was.
func Run(ctx context.Context, o Options) error {
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	fw := netcfg.New(0)
	if err := apply(cfg, fw, o.Log); err != nil {
		return err
	}
	o.Log.Info("appliance running", "config", o.ConfigPath, "pid", os.Getpid())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			o.Log.Info("appliance stopping; the firewall stays in place")
			return nil
		case <-hup:
			next, err := config.Load(o.ConfigPath)
			if err != nil {
				o.Log.Error("reload refused, the running firewall is unchanged", "err", err)
				continue
			}
			if err := apply(next, fw, o.Log); err != nil {
				o.Log.Error("reload failed, the running firewall is unchanged", "err", err)
				continue
			}
			o.Log.Info("configuration reloaded")
		}
	}
}

func apply(cfg *config.Config, fw *netcfg.Firewall, log *slog.Logger) error {
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	// The firewall goes in before the links come up, so no packet crosses an open box.
	if err := fw.Apply(netcfg.Build(cfg)); err != nil {
		return err
	}
	warnings, err := netcfg.ApplyLinks(cfg)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	log.Info("firewall applied", "table", "inet "+netcfg.TableName)
	return nil
}
