package lab

import (
	"fmt"
	"slices"
)

// AddLANHost adds a host joined to the LAN switch (a namespace named NS(name) with one
// interface, eth0, with the MAC mac; "" keeps the kernel's random one), for tests that need
// more devices on the LAN than the pbx and the phone: DHCP clients, a second DHCP server.
// It has no address; Close deletes it with the lab's own hosts.
func (l *Lab) AddLANHost(name, mac string) error {
	if slices.Contains(Hosts, name) || !validPrefix.MatchString(name) || len(name) > 10 {
		return fmt.Errorf("lab: add host %q: use up to 10 of [a-z0-9], not a host of the lab", name)
	}
	ns := l.NS(name)
	if err := runCmd("ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("lab: add host %s: %w", name, err)
	}
	l.mu.Lock()
	l.created = append(l.created, ns)
	l.mu.Unlock()
	// As in build: no DAD, so that addresses are usable at once.
	if err := l.sysctl(name, map[string]string{
		"net/ipv6/conf/all/accept_dad":     "0",
		"net/ipv6/conf/default/accept_dad": "0",
	}); err != nil {
		return fmt.Errorf("lab: add host %s: %w", name, err)
	}
	steps := [][]string{
		{"link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", name, "netns", l.NS(HostSwitch)},
		{"-n", l.NS(HostSwitch), "link", "set", name, "master", "br0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	}
	if mac != "" {
		steps = append(steps, []string{"-n", ns, "link", "set", "dev", "eth0", "address", mac})
	}
	steps = append(steps, []string{"-n", ns, "link", "set", "eth0", "up"})
	for _, args := range steps {
		if err := runCmd("ip", args...); err != nil {
			return fmt.Errorf("lab: add host %s: %w", name, err)
		}
	}
	return nil
}
