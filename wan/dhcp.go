package wan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/officeedge/appliance/internal/store"
)

// lease is what a DHCP uplink got: its address and gateway (zero when it has none).
type lease struct {
	role Role
	addr netip.Prefix
	gw   netip.Addr
	dns  []netip.Addr
}

// dhcpLine is one DHCP uplink's client: its interface, the metric of its own default route,
// the file its lease is kept in across restarts ("" for none), and kick, which the link
// watcher signals when the modem re-enumerates (the link is deleted and made again, or its
// carrier comes back): the lease is then asked for at once instead of at the next renewal.
type dhcpLine struct {
	role   Role
	dev    string
	metric int
	file   string
	kick   chan struct{}
	log    *slog.Logger
}

// run keeps a DHCPv4 lease on the line: it requests one (asking for the address it had, from
// before a restart too), applies the address and the uplink's own default route, renews at
// T1, starts over when renewal fails by expiry or the line is kicked, and reports every change
// on out. It returns when ctx ends.
func (d *dhcpLine) run(ctx context.Context, out chan<- lease) {
	cur := lease{role: d.role}
	want := d.load()
	// On exit the address stays: it carries its lease's lifetime, so the kernel drops it when
	// the lease runs out, and a restarting daemon does not cut the line.
	backoff := time.Second
	for ctx.Err() == nil {
		sctx, cancel := d.kickable(ctx)
		got, ok, err := d.session(sctx, &cur, want, out)
		kicked := sctx.Err() != nil && ctx.Err() == nil
		cancel()
		if cur.addr.IsValid() {
			want = cur.addr.Addr()
		}
		switch {
		case kicked:
			d.log.Info("wan: dhcp: line re-made or back: asking for a lease at once", "dev", d.dev)
			backoff = time.Second
			continue
		case got:
			backoff = time.Second
		case err != nil:
			d.log.Warn("wan: dhcp", "dev", d.dev, "err", err)
		}
		if !ok && cur.addr.IsValid() && ctx.Err() == nil {
			// The lease ran out or was refused: the address is no longer the line's.
			if err := setLeaseAddr(d.dev, netip.Prefix{}, cur.addr, 0); err != nil {
				d.log.Warn("wan: dhcp: remove address", "dev", d.dev, "err", err)
			}
			cur.addr, cur.gw, cur.dns = netip.Prefix{}, netip.Addr{}, nil
			send(ctx, out, cur)
		}
		if !got {
			sctx, cancel := d.kickable(ctx)
			sleep(sctx, backoff)
			cancel()
			backoff = min(backoff*2, time.Minute)
		}
	}
}

// kickable is ctx that also ends when the line is kicked.
func (d *dhcpLine) kickable(ctx context.Context) (context.Context, context.CancelFunc) {
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-d.kick:
			cancel()
		case <-sctx.Done():
		}
	}()
	return sctx, cancel
}

// session is one client's life: from the request through its renewals. got says a lease was
// obtained; ok says the current lease is still valid when it ends (a kick, not an expiry).
func (d *dhcpLine) session(ctx context.Context, cur *lease, want netip.Addr, out chan<- lease) (got, ok bool, err error) {
	c, err := nclient4.New(d.dev, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return false, true, fmt.Errorf("client: %w", err)
	}
	defer c.Close()
	// Ask for the address the line had (INIT-REBOOT's hope, in a DISCOVER); the REQUEST then
	// takes what was offered.
	var mods []dhcpv4.Modifier
	if want.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want.AsSlice())))
	}
	offer, err := c.DiscoverOffer(ctx, mods...)
	if err != nil {
		return false, true, fmt.Errorf("no lease: %w", err)
	}
	l, err := c.RequestFromOffer(ctx, offer)
	if err != nil {
		return false, true, fmt.Errorf("no lease: %w", err)
	}
	// The first ACK of a session applies everything afresh: a re-made link has lost both.
	fresh := true
	for ctx.Err() == nil && l != nil {
		next, err := leaseOf(d.role, l.ACK)
		if err != nil {
			return true, false, fmt.Errorf("unusable lease: %w", err)
		}
		valid := l.ACK.IPAddressLeaseTime(time.Hour)
		// Every ACK, renewals included, restarts the address's lifetime in the kernel:
		// otherwise it would expire one lease time after the first ACK.
		if err := setLeaseAddr(d.dev, next.addr, cur.addr, valid); err != nil {
			return true, false, fmt.Errorf("apply lease: %w", err)
		}
		if fresh || next.addr != cur.addr || next.gw != cur.gw || !slices.Equal(next.dns, cur.dns) {
			if next.gw.IsValid() {
				if err := ownRoute(d.dev, next.gw, d.metric); err != nil {
					d.log.Warn("wan: dhcp: route", "dev", d.dev, "err", err)
				}
			}
			if next.addr != cur.addr || next.gw != cur.gw || !slices.Equal(next.dns, cur.dns) {
				d.log.Info("wan: dhcp lease", "dev", d.dev, "address", next.addr, "gateway", next.gw, "dns", fmt.Sprint(next.dns), "lease", valid)
				if err := d.save(next, valid); err != nil {
					d.log.Warn("wan: dhcp: keep lease", "dev", d.dev, "err", err)
				}
			}
			*cur = next
			send(ctx, out, *cur)
			fresh = false
		}
		// Renew at T1; keep trying until the lease expires, then start over.
		t1 := l.ACK.IPAddressRenewalTime(valid / 2)
		expiry := time.Now().Add(valid)
		sleep(ctx, t1)
		var renewed *nclient4.Lease
		for ctx.Err() == nil && time.Now().Before(expiry) {
			renewed, err = c.Renew(ctx, l)
			if err == nil {
				break
			}
			var nak *nclient4.ErrNak
			if errors.As(err, &nak) {
				d.log.Warn("wan: dhcp: lease refused, asking for a new one", "dev", d.dev)
				return true, false, nil
			}
			d.log.Warn("wan: dhcp: renew", "dev", d.dev, "err", err)
			sleep(ctx, min(time.Until(expiry), 10*time.Second))
		}
		if renewed == nil && ctx.Err() == nil {
			return true, false, nil // expired
		}
		l = renewed
	}
	return true, true, nil
}

// savedLease is a lease as kept in the state directory.
type savedLease struct {
	Interface string       `json:"interface"`
	Address   netip.Prefix `json:"address"`
	Gateway   netip.Addr   `json:"gateway,omitzero"`
	DNS       []netip.Addr `json:"dns,omitempty"`
	Obtained  time.Time    `json:"obtained"`
	Lease     string       `json:"lease"`
}

// save keeps the lease (crash-safe: the old file or the new one, never half of one).
func (d *dhcpLine) save(l lease, valid time.Duration) error {
	if d.file == "" {
		return nil
	}
	b, err := json.MarshalIndent(savedLease{Interface: d.dev, Address: l.addr, Gateway: l.gw, DNS: l.dns,
		Obtained: time.Now().UTC(), Lease: valid.String()}, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFile(d.file, append(b, '\n'), 0o600)
}

// load returns the address of the kept lease, if any: the one to ask for first.
func (d *dhcpLine) load() netip.Addr {
	if d.file == "" {
		return netip.Addr{}
	}
	b, err := os.ReadFile(d.file)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("wan: dhcp: kept lease", "err", err)
		}
		return netip.Addr{}
	}
	var sl savedLease
	if err := json.Unmarshal(b, &sl); err != nil || !sl.Address.Addr().Is4() {
		d.log.Warn("wan: dhcp: kept lease unreadable, asking for any address", "file", d.file, "err", err)
		return netip.Addr{}
	}
	d.log.Info("wan: dhcp: asking for the kept lease's address", "dev", d.dev, "address", sl.Address.Addr())
	return sl.Address.Addr()
}

func send(ctx context.Context, out chan<- lease, l lease) {
	select {
	case out <- l:
	case <-ctx.Done():
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func leaseOf(role Role, ack *dhcpv4.DHCPv4) (lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return lease{}, errors.New("no address in the ACK")
	}
	mask := ack.SubnetMask()
	bits := 24
	if mask != nil {
		bits, _ = mask.Size()
	}
	l := lease{role: role, addr: netip.PrefixFrom(ip, bits)}
	if rs := ack.Router(); len(rs) > 0 {
		l.gw, _ = netip.AddrFromSlice(rs[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.dns = append(l.dns, a)
		}
	}
	return l, nil
}

// setLeaseAddr puts addr on dev (with the lease's lifetime, so the kernel drops it if we die)
// and removes old if it differs.
func setLeaseAddr(dev string, addr, old netip.Prefix, valid time.Duration) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	if old.IsValid() && old != addr {
		a := &netlink.Addr{IPNet: ipnet(old)}
		if err := netlink.AddrDel(link, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove %s: %w", old, err)
		}
	}
	if !addr.IsValid() {
		return nil
	}
	secs := int(valid / time.Second)
	a := &netlink.Addr{IPNet: ipnet(addr), ValidLft: secs, PreferedLft: secs}
	if err := netlink.AddrReplace(link, a); err != nil {
		return fmt.Errorf("add %s: %w", addr, err)
	}
	return nil
}

// ownRoute is the uplink's own default route (metric 100 or 200), as netcfg sets for static
// uplinks; probes bound to the device use it.
func ownRoute(dev string, gw netip.Addr, metric int) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	return netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index,
		Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: gw.AsSlice(), Priority: metric})
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
