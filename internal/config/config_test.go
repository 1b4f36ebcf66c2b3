package config

import (
	"strings"
	"testing"
)

// base is a small valid config; tests append to it or replace one line.
const base = `site = "Test"
[lan]
interface = "lan0"
addresses = ["192.168.50.1/24", "2001:db8:50::1/64"]
[uplink.primary]
interface = "wan0"
address = "198.51.100.2/30"
gateway = "198.51.100.1"
[uplink.backup]
interface = "lte0"
mode = "dhcp"
[pbx]
address = "192.168.50.10"
[sip_peers.trunk]
networks = ["192.0.2.10"]
[admin]
networks = ["192.0.2.30/32"]
`

func TestExampleIsValid(t *testing.T) {
	c, err := Parse("example.toml", Example())
	if err != nil {
		t.Fatalf("the example config must pass: %v", err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("the example config should need no warning, got %q", c.Warnings)
	}
	if c.Uplink.Primary.Role != "primary" || c.Uplink.Backup.Role != "backup" {
		t.Errorf("roles not set: %+v %+v", c.Uplink.Primary, c.Uplink.Backup)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	p := c.PBX
	if p.SIPPort != 5060 || p.SIPTLSPort != 5061 || len(p.SIPTransports) != 2 || p.WebFrom != FromAdmin || p.RTPFrom != FromAnywhere {
		t.Errorf("PBX defaults wrong: %+v", p)
	}
	if c.Admin.SSHPort != 22 || len(c.Admin.WebPorts) != 2 {
		t.Errorf("admin defaults wrong: %+v", c.Admin)
	}
	if c.SIPPeers["trunk"].Kind != "trunk" || c.SIPPeers["trunk"].Networks[0].Bits() != 32 {
		t.Errorf("a bare address must be a /32 host: %+v", c.SIPPeers["trunk"])
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace [2]string // replace [0] in base with [1]; [0] "" appends [1]
		want    string    // the whole first error line
	}{
		{"bad gateway address", [2]string{`gateway = "198.51.100.1"`, `gateway = "10.0.0.300"`},
			`t.toml:8:12: uplink.primary.gateway: "10.0.0.300" is not an IP address`},
		{"unknown key", [2]string{`mode = "dhcp"`, `mode = "dhcp"` + "\ngatway = \"1.2.3.4\""},
			`t.toml:12:11: uplink.backup.gatway: unknown setting "gatway"`},
		{"unknown section", [2]string{"", "[firewal]\nopen = true"},
			`t.toml:19:1: firewal: unknown setting "firewal"`},
		{"world-open SIP", [2]string{`networks = ["192.0.2.10"]`, `networks = ["0.0.0.0/0"]`},
			`t.toml:15:13: sip_peers.trunk.networks: 0.0.0.0/0 opens SIP to the whole internet`},
		{"world-open SIP v6", [2]string{`networks = ["192.0.2.10"]`, `networks = ["192.0.2.10", "::/0"]`},
			`t.toml:15:13: sip_peers.trunk.networks: ::/0 opens SIP to the whole internet`},
		{"gateway outside subnet", [2]string{`gateway = "198.51.100.1"`, `gateway = "198.51.100.9"`},
			`t.toml:8:12: uplink.primary.gateway: 198.51.100.9 is outside the uplink's subnet 198.51.100.0/30`},
		{"overlapping subnets", [2]string{`address = "198.51.100.2/30"`, `address = "192.168.50.2/24"`},
			`t.toml:7:12: uplink.primary.address: subnet 192.168.50.0/24 overlaps 192.168.50.0/24 of lan.addresses`},
		{"PBX outside the LAN", [2]string{`address = "192.168.50.10"`, `address = "192.168.60.10"`},
			`t.toml:13:12: pbx.address: 192.168.60.10 is not on the LAN (192.168.50.0/24, 2001:db8:50::/64)`},
		{"bad port range", [2]string{"[sip_peers", "rtp_ports = \"11000-9000\"\n[sip_peers"},
			`t.toml:14:14: pbx.rtp_ports: "11000-9000" is not a port range: 11000 is above 9000`},
		{"port out of range", [2]string{"[sip_peers", "sip_port = 70000\n[sip_peers"},
			`t.toml:14:12: pbx.sip_port:`},
		{"two services on one port", [2]string{"[sip_peers", "tunnel_port = 5060\n[sip_peers"},
			`t.toml:14:15: pbx.tunnel_port: udp port 5060 is already forwarded by pbx.sip_port`},
		{"same interface twice", [2]string{`interface = "lte0"`, `interface = "wan0"`},
			`t.toml:10:14: uplink.backup.interface: interface "wan0" is already used by uplink.primary.interface`},
		{"static without gateway", [2]string{`gateway = "198.51.100.1"`, ``},
			`t.toml:5:1: uplink.primary.gateway: a static uplink needs a gateway`},
		{"network address as box address", [2]string{`addresses = ["192.168.50.1/24", `, `addresses = ["192.168.50.0/24", `},
			`t.toml:4:14: lan.addresses: 192.168.50.0/24: this is the network's own address`},
		{"admin open to the world", [2]string{`networks = ["192.0.2.30/32"]`, `networks = ["0.0.0.0/0"]`},
			`t.toml:17:13: admin.networks: 0.0.0.0/0 would open SSH and management to the whole internet`},
		{"bad source keyword", [2]string{"[sip_peers", "web_from = \"everyone\"\n[sip_peers"},
			`t.toml:14:13: pbx.web_from: "everyone" is not one of anywhere, trusted, admin, vpn, nobody`},
		{"forward to a host outside the LAN", [2]string{"", "[forward.nas]\nprotocol = \"udp\"\nports = \"51820\"\nto = \"10.9.9.9\"\nfrom = [\"0.0.0.0/0\"]"},
			`t.toml:22:7: forward.nas.to: 10.9.9.9 is not an IPv4 host on the LAN`},
		{"bad forward name", [2]string{"", "[forward.\"my nas\"]\nprotocol = \"udp\"\nports = \"51820\"\nto = \"192.168.50.5\"\nfrom = [\"0.0.0.0/0\"]"},
			`t.toml:19:1: forward."my nas": name "my nas": use letters, digits, _ and - only`},
		{"IPv6 SIP OPTIONS target", [2]string{`networks = ["192.0.2.10"]`, `networks = ["192.0.2.10"]` + "\noptions = \"[2001:db8::10]:5060\""},
			`t.toml:16:12: sip_peers.trunk.options: "[2001:db8::10]:5060" is not an IPv4 address[:port]`},
		{"SIP OPTIONS to port 0", [2]string{`networks = ["192.0.2.10"]`, `networks = ["192.0.2.10"]` + "\noptions = \"192.0.2.10:0\""},
			`t.toml:16:12: sip_peers.trunk.options: "192.0.2.10:0" is not an IPv4 address[:port]`},
		{"TOML syntax", [2]string{`site = "Test"`, `site = "Test`},
			`t.toml:1:13: site: strings cannot contain newlines`},
		{"wrong type", [2]string{`site = "Test"`, `site = 5`},
			`t.toml:1:8: site: must be text in quotes, got the number 5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := base + "\n" + tc.replace[1]
			if tc.replace[0] != "" {
				if !strings.Contains(base, tc.replace[0]) {
					t.Fatalf("test bug: %q not in base", tc.replace[0])
				}
				src = strings.Replace(base, tc.replace[0], tc.replace[1], 1)
			}
			_, err := Parse("t.toml", []byte(src))
			if err == nil {
				t.Fatalf("config accepted, want error %q", tc.want)
			}
			first := strings.Split(err.Error(), "\n")[0]
			if !strings.HasPrefix(first, tc.want) {
				t.Errorf("error\n got: %s\nwant: %s...", err, tc.want)
			}
		})
	}
}

func TestAllowSIPFromAnywhereWarns(t *testing.T) {
	src := strings.Replace(base, `networks = ["192.0.2.10"]`, `networks = ["0.0.0.0/0"]`, 1)
	src = strings.Replace(src, `address = "192.168.50.10"`, "address = \"192.168.50.10\"\nallow_sip_from_anywhere = true", 1)
	c, err := Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "SIP is open to the whole internet") {
		t.Errorf("want a warning about world-open SIP, got %q", c.Warnings)
	}
}

func TestAllErrorsReported(t *testing.T) {
	src := strings.Replace(base, `gateway = "198.51.100.1"`, `gateway = "198.51.100.9"`, 1)
	src = strings.Replace(src, `address = "192.168.50.10"`, `address = "192.168.60.10"`, 1)
	_, err := Parse("t.toml", []byte(src))
	if err == nil || len(err.(Errors)) != 2 {
		t.Fatalf("want both errors, got %v", err)
	}
}

// TestPositionOfSemanticErrors guards the reflection that reads key positions from the TOML
// library: an upgrade that renames its fields must fail here, not lose line numbers.
func TestPositionOfSemanticErrors(t *testing.T) {
	src := strings.Replace(base, `address = "192.168.50.10"`, `address = "192.168.60.10"`, 1)
	_, err := Parse("t.toml", []byte(src))
	var es Errors
	if e, ok := err.(Errors); ok {
		es = e
	}
	if len(es) != 1 || es[0].Line != 13 || es[0].Col == 0 {
		t.Fatalf("want line 13 with a column, got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/appliance.toml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/appliance.toml") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add(Example())
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err == nil && c.PBX.Address.IsValid() && !c.inLAN(c.PBX.Address.Addr) {
			t.Fatalf("accepted a PBX outside the LAN")
		}
	})
}

func TestWebPasswordHashMustBeAHash(t *testing.T) {
	_, err := Parse("t.toml", []byte(base+"[web]\npassword_hash = \"hunter22\"\n"))
	if err == nil || !strings.Contains(err.Error(), "web.password_hash: not an argon2id hash") {
		t.Fatalf("a clear-text password must be refused, got %v", err)
	}
}
