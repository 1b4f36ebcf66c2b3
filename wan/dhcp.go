package wan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lease is what a DHCP uplink got: its address and gateway (zero when it has none).
type lease struct {
	role Role
	addr netip.Prefix
	gw   netip.Addr
}

// runDHCP keeps a DHCPv4 lease on dev: it requests one, applies the address and the uplink's
// own default route (metric), renews at T1, rebinds from scratch when renewal fails by
// expiry, and reports every change on out. It returns when ctx ends.
func runDHCP(ctx context.Context, log *slog.Logger, role Role, dev string, metric int, out chan<- lease) {
	var cur lease
	cur.role = role
	drop := func() {
		if cur.addr.IsValid() {
			if err := setLeaseAddr(dev, netip.Prefix{}, cur.addr, 0); err != nil {
				log.Warn("wan: dhcp: remove address", "dev", dev, "err", err)
			}
			cur.addr, cur.gw = netip.Prefix{}, netip.Addr{}
			send(ctx, out, cur)
		}
	}
	// On exit the address stays: it carries its lease's lifetime, so the kernel drops it when
	// the lease runs out, and a restarting daemon does not cut the line.
	backoff := time.Second
	for ctx.Err() == nil {
		c, err := nclient4.New(dev, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
		if err != nil {
			log.Warn("wan: dhcp client", "dev", dev, "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, time.Minute)
			continue
		}
		l, err := c.Request(ctx)
		if err != nil {
			c.Close()
			log.Warn("wan: dhcp: no lease", "dev", dev, "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
		for ctx.Err() == nil && l != nil {
			next, err := leaseOf(role, l.ACK)
			if err != nil {
				log.Warn("wan: dhcp: unusable lease", "dev", dev, "err", err)
				break
			}
			valid := l.ACK.IPAddressLeaseTime(time.Hour)
			// Every ACK, renewals included, restarts the address's lifetime in the kernel:
			// otherwise it would expire one lease time after the first ACK.
			if err := setLeaseAddr(dev, next.addr, cur.addr, valid); err != nil {
				log.Warn("wan: dhcp: apply lease", "dev", dev, "err", err)
				break
			}
			if next.addr != cur.addr || next.gw != cur.gw {
				if next.gw.IsValid() {
					if err := ownRoute(dev, next.gw, metric); err != nil {
						log.Warn("wan: dhcp: route", "dev", dev, "err", err)
					}
				}
				log.Info("wan: dhcp lease", "dev", dev, "address", next.addr, "gateway", next.gw, "lease", valid)
				cur = next
				send(ctx, out, cur)
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
					log.Warn("wan: dhcp: lease refused, asking for a new one", "dev", dev)
					break
				}
				log.Warn("wan: dhcp: renew", "dev", dev, "err", err)
				sleep(ctx, min(time.Until(expiry), 10*time.Second))
			}
			l = renewed
		}
		c.Close()
		if ctx.Err() == nil {
			drop()
		}
	}
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
