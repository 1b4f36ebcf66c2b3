package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDHCPAndRADefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	d := c.DHCP
	if d.Enabled || d.LeaseTime != 12*time.Hour || d.CheckInterval != 5*time.Minute || d.Domain != c.DNS.Domain {
		t.Errorf("[dhcp] defaults: %+v", d)
	}
	if !c.RAOn() || len(c.RAPrefixes()) != 1 || c.RAPrefixes()[0] != netip.MustParsePrefix("2001:db8:50::/64") || c.BoxLAN6() != netip.MustParseAddr("2001:db8:50::1") {
		t.Errorf("[ra] should be on for the LAN's /64: %v %v", c.RAOn(), c.RAPrefixes())
	}
	c, err = Parse("t.toml", []byte(base+`[dhcp]
enabled = true
pool = "192.168.50.100-192.168.50.199"
domain = ""
[dhcp.static.Desk-Phone]
mac = "80-5E-C0-00-00-21"
address = "192.168.50.21"
[[dhcp.provision]]
name = "yealink"
mac_prefixes = ["80-5E-C0"]
url = "http://192.168.50.10/prov/"
[ra]
enabled = false
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.DHCP.Static["Desk-Phone"]
	p := c.DHCP.Provision[0]
	if s.Hostname != "desk-phone" || s.MAC.String() != "80:5e:c0:00:00:21" || c.DHCP.Domain != "" {
		t.Errorf("static lease: %+v %v, domain %q", s, s.MAC, c.DHCP.Domain)
	}
	if len(p.URLOptions) != 2 || p.MACPrefixes[0] != "80:5e:c0" || !p.MACPrefixes[0].Matches(s.MAC.HardwareAddr) {
		t.Errorf("provision: %+v", p)
	}
	if c.RAOn() {
		t.Error("ra.enabled = false still advertises")
	}
	// New devices: a pool's worth per lease time, at least 30 an hour, unless set.
	if n := c.DHCP.NewDevicesRate(); n != 30 || c.DHCP.Pool.Size() != 100 {
		t.Errorf("new devices per hour for 100 addresses leased 12h: %d (pool size %d), want 30", n, c.DHCP.Pool.Size())
	}
	c.DHCP.LeaseTime = 30 * time.Minute
	if n := c.DHCP.NewDevicesRate(); n != 200 {
		t.Errorf("new devices per hour for 100 addresses leased 30m: %d, want 200", n)
	}
	c.DHCP.NewDevicesPerHour = 5
	if n := c.DHCP.NewDevicesRate(); n != 5 {
		t.Errorf("new_devices_per_hour = 5 gives %d", n)
	}
}

func TestDHCPErrors(t *testing.T) {
	const on = "[dhcp]\nenabled = true\n" // lines 18 and 19, after base
	for _, tc := range []struct {
		name, add, want string
	}{
		{"no pool", on, `t.toml:18:1: dhcp.pool: the DHCP server needs a pool of addresses to hand out (like "192.168.50.100-192.168.50.199")`},
		{"pool outside the LAN", on + `pool = "192.168.60.100-192.168.60.199"`,
			`t.toml:20:9: dhcp.pool: 192.168.60.100-192.168.60.199 is not inside the LAN subnet 192.168.50.0/24`},
		{"pool with the box", on + `pool = "192.168.50.1-192.168.50.9"`,
			`t.toml:20:9: dhcp.pool: 192.168.50.1-192.168.50.9 includes the box's own address 192.168.50.1`},
		{"pool with the PBX", on + `pool = "192.168.50.5-192.168.50.50"`,
			`t.toml:20:9: dhcp.pool: 192.168.50.5-192.168.50.50 includes the PBX's address 192.168.50.10`},
		{"negative new devices", on + `pool = "192.168.50.100-192.168.50.199"` + "\nnew_devices_per_hour = -1",
			`t.toml:21:24: dhcp.new_devices_per_hour: must be from 1 to 100000 (it is -1)`},
		{"pool backwards", on + `pool = "192.168.50.200-192.168.50.100"`,
			`t.toml:20:9: dhcp.pool: "192.168.50.200-192.168.50.100" is not a range: 192.168.50.200 is above 192.168.50.100`},
		{"bad MAC", `[dhcp.static.phone]` + "\n" + `mac = "80:5e:c0:00:00"` + "\n" + `address = "192.168.50.21"`,
			`t.toml:19:8: dhcp.static.phone.mac: "80:5e:c0:00:00" is not a MAC address (like "00:15:65:12:34:56")`},
		{"static outside the LAN", `[dhcp.static.phone]` + "\n" + `mac = "80:5e:c0:00:00:21"` + "\n" + `address = "10.1.1.1"`,
			`t.toml:20:12: dhcp.static.phone.address: 10.1.1.1 is not a host address in the LAN subnet 192.168.50.0/24`},
		{"static on the box", `[dhcp.static.phone]` + "\n" + `mac = "80:5e:c0:00:00:21"` + "\n" + `address = "192.168.50.1"`,
			`t.toml:20:12: dhcp.static.phone.address: 192.168.50.1 is the box's own address`},
		{"bad URL", `[[dhcp.provision]]` + "\n" + `name = "x"` + "\n" + `vendor_class = "yealink"` + "\n" + `url = "file:///etc/passwd"`,
			`t.toml:21:8: dhcp.provision.url: provision 1 ("x"): "file:///etc/passwd": phones fetch their settings over http, https, tftp or ftp, not "file"`},
		{"bad OUI", `[[dhcp.provision]]` + "\n" + `name = "x"` + "\n" + `mac_prefixes = ["80:5e:c"]` + "\n" + `url = "http://192.168.50.10/"`,
			`t.toml:20:17: dhcp.provision.mac_prefixes: "80:5e:c" is not the start of a MAC address`},
		{"RA on a /48", "[ra]\nenabled = true",
			`t.toml:4:14: lan.addresses: 2001:db8::/48 is not a /64`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base + tc.add + "\n"
			if tc.name == "RA on a /48" {
				cfg = strings.Replace(cfg, "2001:db8:50::1/64", "2001:db8::1/48", 1)
			}
			_, err := Parse("t.toml", []byte(cfg))
			if err == nil {
				t.Fatal("accepted")
			}
			if first := strings.Split(err.Error(), "\n")[0]; !strings.HasPrefix(first, tc.want) {
				t.Errorf("got  %s\nwant %s", first, tc.want)
			}
		})
	}
	c, err := Parse("t.toml", []byte(strings.Replace(base, "2001:db8:50::1/64", "2001:db8::1/48", 1)))
	if err != nil || c.RAOn() || len(c.Warnings) == 0 || !strings.Contains(strings.Join(c.Warnings, "\n"), "not a /64") {
		t.Errorf("a /48 LAN without [ra]: no advertisements and a warning, got %v %v %q", err, c.RAOn(), c.Warnings)
	}
}
