package setup

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

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/dhcpd"
)

// LANAddress is the box's address in the setup state: the example config's LAN address,
// which the first config keeps, so the page's address does not change when the daemon starts.
var LANAddress = netip.MustParsePrefix("192.168.1.1/24")

// DHCP in the setup state: dhcpd.Probe's DISCOVER finds another server; without one the box
// serves the example config's pool with short leases (a PC that got one moves to the office's
// settings soon after the first config is in force).
const setupLease = 10 * time.Minute

// upLAN brings the LAN link up.
func upLAN(dev string) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("setup: LAN interface %s: %w", dev, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("setup: LAN interface %s up: %w", dev, err)
	}
	return nil
}

// addLANAddress puts the setup address on the LAN.
func addLANAddress(dev string) error {
	if err := setAddr(dev, LANAddress, netip.Prefix{}, 0); err != nil {
		return fmt.Errorf("setup: address %s on %s: %w", LANAddress, dev, err)
	}
	return nil
}

// runLAN gives the LAN its addresses and DHCP. It looks for a DHCP server first: with one
// there, the box takes a lease from it (so the page is reachable on the office's network as
// it is), calls onAddr with each address and serves no DHCP; without, it serves the setup
// pool. The setup address is added (onAddr) unless the other server or its router already
// has it: an office router on 192.168.1.1 must not lose its address to the box. It returns
// when ctx ends.
func runLAN(ctx context.Context, dev string, log *slog.Logger, onAddr func(netip.Prefix), onServe func()) error {
	offer, err := dhcpd.Probe(ctx, dev)
	if err != nil {
		log.Error("setup: DHCP: the LAN could not be checked for another DHCP server: serving none", "err", err)
	}
	if offer == nil || !taken(offer, LANAddress.Addr()) {
		if err := addLANAddress(dev); err != nil {
			return err
		}
		onAddr(LANAddress)
	} else {
		log.Warn("setup: another device on the LAN is "+LANAddress.Addr().String()+": the box keeps only its leased address", "server", offer.ServerIdentifier())
	}
	switch {
	case err != nil:
		<-ctx.Done()
		return nil
	case offer == nil:
		log.Info("setup: no other DHCP server answers on the LAN: serving addresses", "interface", dev)
		onServe()
		return serveDHCP(ctx, dev, log)
	}
	log.Info("setup: another DHCP server answers on the LAN: taking a lease from it, serving none",
		"server", offer.ServerIdentifier(), "offered", offer.YourIPAddr)
	return keepLease(ctx, dev, log, onAddr)
}

// taken says whether the offer's server or router is a.
func taken(offer *dhcpv4.DHCPv4, a netip.Addr) bool {
	ips := append([]net.IP{offer.ServerIdentifier()}, offer.Router()...)
	for _, ip := range ips {
		if x, ok := netip.AddrFromSlice(ip.To4()); ok && x == a {
			return true
		}
	}
	return false
}

// serveDHCP serves the setup pool with the project's DHCP server, which also keeps checking
// for another server and stops handing out addresses while one answers.
func serveDHCP(ctx context.Context, dev string, log *slog.Logger) error {
	cfg, err := config.Parse("example", config.Example())
	if err != nil {
		return fmt.Errorf("setup: the example config: %w", err)
	}
	cfg.LAN.Interface = dev
	cfg.LAN.Addresses = []config.Prefix{{Prefix: LANAddress}}
	cfg.DHCP.Enabled = true
	cfg.DHCP.LeaseTime = setupLease
	cfg.DHCP.Static, cfg.DHCP.Provision = nil, nil
	srv, err := dhcpd.New(cfg, dhcpd.Options{Log: log})
	if err != nil {
		return fmt.Errorf("setup: DHCP server: %w", err)
	}
	return srv.Run(ctx)
}

// keepLease keeps a DHCP lease on dev until ctx ends, then removes its address.
func keepLease(ctx context.Context, dev string, log *slog.Logger, onLease func(netip.Prefix)) error {
	var cur netip.Prefix
	defer func() {
		if cur.IsValid() {
			_ = setAddr(dev, netip.Prefix{}, cur, 0)
		}
	}()
	backoff := time.Second
	for ctx.Err() == nil {
		err := leaseSession(ctx, dev, &cur, onLease)
		if ctx.Err() != nil {
			break
		}
		log.Warn("setup: DHCP lease", "interface", dev, "err", err)
		wait(ctx, backoff)
		backoff = min(backoff*2, time.Minute)
	}
	return nil
}

// leaseSession gets a lease and renews it until renewal fails or ctx ends.
func leaseSession(ctx context.Context, dev string, cur *netip.Prefix, onLease func(netip.Prefix)) error {
	c, err := nclient4.New(dev, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := c.Request(ctx)
	for err == nil {
		ip, ok := netip.AddrFromSlice(l.ACK.YourIPAddr.To4())
		if !ok || ip.IsUnspecified() {
			return errors.New("no address in the ACK")
		}
		bits := 24
		if m := l.ACK.SubnetMask(); m != nil {
			bits, _ = m.Size()
		}
		next := netip.PrefixFrom(ip, bits)
		valid := l.ACK.IPAddressLeaseTime(time.Hour)
		// With the lease's lifetime: the kernel drops the address if the box dies.
		if err := setAddr(dev, next, *cur, valid); err != nil {
			return err
		}
		if next != *cur {
			*cur = next
			onLease(next)
		}
		wait(ctx, l.ACK.IPAddressRenewalTime(valid/2))
		if ctx.Err() != nil {
			return nil
		}
		l, err = c.Renew(ctx, l)
	}
	return err
}

// setAddr puts addr on dev with a lifetime and removes old if it differs.
func setAddr(dev string, addr, old netip.Prefix, valid time.Duration) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	if old.IsValid() && old != addr {
		if err := netlink.AddrDel(link, &netlink.Addr{IPNet: ipnet(old)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove %s: %w", old, err)
		}
	}
	if !addr.IsValid() {
		return nil
	}
	secs := int(valid / time.Second)
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipnet(addr), ValidLft: secs, PreferedLft: secs}); err != nil {
		return fmt.Errorf("add %s: %w", addr, err)
	}
	return nil
}

func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Interfaces are the box's links other than lo and the setup LAN: the uplink choices.
func Interfaces(lan string) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 && i.Name != lan {
			out = append(out, i.Name)
		}
	}
	return out
}
