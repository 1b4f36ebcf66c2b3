package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// edit applies replacements to base in order; a replacement with an empty old appends.
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	src := base
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] == "" {
			src += "\n" + pairs[i+1]
			continue
		}
		if !strings.Contains(src, pairs[i]) {
			t.Fatalf("test bug: %q not in the config", pairs[i])
		}
		src = strings.Replace(src, pairs[i], pairs[i+1], 1)
	}
	return src
}

// wantError asserts that src is refused with exactly the line want among its errors.
func wantError(t *testing.T, src, want string) {
	t.Helper()
	_, err := Parse("t.toml", []byte(src))
	if err == nil {
		t.Fatalf("config accepted, want error\n%s", want)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if line == want {
			return
		}
	}
	t.Errorf("error\n got: %s\nwant: %s", err, want)
}

// wantOK asserts that src is accepted and returns it.
func wantOK(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatalf("config refused: %v", err)
	}
	return c
}

const (
	adminNets = `networks = ["192.0.2.30/32"]`
	trunkNets = `networks = ["192.0.2.10"]`
	anywhere  = "address = \"192.168.50.10\"\nallow_sip_from_anywhere = true"
)

func TestWideAdminNetworksRefused(t *testing.T) {
	for _, tc := range []struct{ name, nets, want string }{
		{"two IPv4 halves", `networks = ["0.0.0.0/1", "128.0.0.0/1"]`,
			`t.toml:17:13: admin.networks: 0.0.0.0/1, 128.0.0.0/1 together would open SSH and management to the whole internet; list the admins' own networks`},
		{"two IPv6 halves", `networks = ["::/1", "8000::/1"]`,
			`t.toml:17:13: admin.networks: ::/1, 8000::/1 together would open SSH and management to the whole internet; list the admins' own networks`},
		{"one /7", `networks = ["10.0.0.0/7"]`,
			`t.toml:17:13: admin.networks: 10.0.0.0/7 covers 33554432 IPv4 addresses, more than a /8: SSH and management would be open to a large part of the internet; list the admins' own networks, or set admin.allow_wide = true if you really mean it`},
		{"two /8s, an overlap counted once", `networks = ["10.0.0.0/8", "11.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8"]`,
			`t.toml:17:13: admin.networks: 10.0.0.0/8, 11.0.0.0/8 together cover 33554432 IPv4 addresses, more than a /8: SSH and management would be open to a large part of the internet; list the admins' own networks, or set admin.allow_wide = true if you really mean it`},
		{"IPv6 wider than a /32", `networks = ["2001:db8::/32", "2001:db9::/32"]`,
			`t.toml:17:13: admin.networks: 2001:db8::/32, 2001:db9::/32 together cover 158456325028528675187087900672 IPv6 addresses, more than a /32: SSH and management would be open to a large part of the internet; list the admins' own networks, or set admin.allow_wide = true if you really mean it`},
		{"a tighter limit", "networks = [\"10.0.0.0/15\"]\nwidest4 = 16",
			`t.toml:17:13: admin.networks: 10.0.0.0/15 covers 131072 IPv4 addresses, more than a /16: SSH and management would be open to a large part of the internet; list the admins' own networks, or set admin.allow_wide = true if you really mean it`},
		{"the whole internet even with allow_wide", "networks = [\"0.0.0.0/1\", \"128.0.0.0/1\"]\nallow_wide = true",
			`t.toml:17:13: admin.networks: 0.0.0.0/1, 128.0.0.0/1 together would open SSH and management to the whole internet; list the admins' own networks`},
		{"a bad limit", "widest6 = 0",
			`t.toml:17:11: admin.widest6: must be a prefix length from 1 to 128 (it is 0)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, edit(t, adminNets, tc.nets), tc.want)
		})
	}
}

func TestAdminNetworksUpToTheLimit(t *testing.T) {
	// A /8 and networks inside it are one /8 worth: allowed, and the same for IPv6.
	wantOK(t, edit(t, adminNets, `networks = ["10.0.0.0/8", "10.1.0.0/16", "10.2.3.4/32", "2001:db8::/32", "2001:db8:1::/48"]`))
	c := wantOK(t, edit(t, adminNets, "networks = [\"10.0.0.0/7\"]\nallow_wide = true"))
	if len(c.Warnings) != 1 || c.Warnings[0] != "admin networks may be wider than a /8 or /32 (admin.allow_wide = true): SSH and the box's pages may be open to a large part of the internet" {
		t.Errorf("allow_wide must be warned about, got %q", c.Warnings)
	}
	if c.Admin.Widest4 != 8 || c.Admin.Widest6 != 32 || c.PBX.SIPWidest4 != 8 || c.PBX.SIPWidest6 != 32 {
		t.Errorf("width defaults: admin %d/%d, sip %d/%d", c.Admin.Widest4, c.Admin.Widest6, c.PBX.SIPWidest4, c.PBX.SIPWidest6)
	}
}

func TestWideSIPPeersRefused(t *testing.T) {
	const fix = "list your providers' networks, or set pbx.allow_sip_from_anywhere = true if you really mean it"
	for _, tc := range []struct {
		name string
		edit []string
		want string
	}{
		{"two IPv4 halves", []string{trunkNets, `networks = ["0.0.0.0/1", "128.0.0.0/1"]`},
			`t.toml:15:13: sip_peers.trunk.networks: 0.0.0.0/1, 128.0.0.0/1 together open SIP to the whole internet, the most common way PBXs get hacked; ` + fix},
		{"two IPv6 halves", []string{trunkNets, `networks = ["192.0.2.10", "::/1", "8000::/1"]`},
			`t.toml:15:13: sip_peers.trunk.networks: ::/1, 8000::/1 together open SIP to the whole internet, the most common way PBXs get hacked; ` + fix},
		{"halves in two peers", []string{trunkNets, "networks = [\"128.0.0.0/1\"]\n[sip_peers.branch]\nnetworks = [\"0.0.0.0/1\"]"},
			`t.toml:17:13: sip_peers.branch.networks: the SIP peers' networks (0.0.0.0/1, 128.0.0.0/1) together open SIP to the whole internet, the most common way PBXs get hacked; ` + fix},
		{"a /8 in each of two peers", []string{trunkNets, "networks = [\"11.0.0.0/8\"]\n[sip_peers.a_first]\nnetworks = [\"10.0.0.0/8\", \"10.9.0.0/16\"]"},
			`t.toml:15:13: sip_peers.trunk.networks: the SIP peers' networks (10.0.0.0/8, 11.0.0.0/8) together cover 33554432 IPv4 addresses, more than a /8: SIP would be open to a large part of the internet, the most common way PBXs get hacked; ` + fix},
		{"IPv6 wider than a /32", []string{trunkNets, `networks = ["2001:db8::/31"]`},
			`t.toml:15:13: sip_peers.trunk.networks: 2001:db8::/31 covers 158456325028528675187087900672 IPv6 addresses, more than a /32: SIP would be open to a large part of the internet, the most common way PBXs get hacked; ` + fix},
		{"a tighter limit", []string{"address = \"192.168.50.10\"", "address = \"192.168.50.10\"\nsip_widest4 = 24", trunkNets, `networks = ["192.0.2.0/23"]`},
			`t.toml:16:13: sip_peers.trunk.networks: 192.0.2.0/23 covers 512 IPv4 addresses, more than a /24: SIP would be open to a large part of the internet, the most common way PBXs get hacked; ` + fix},
		{"a bad limit", []string{"address = \"192.168.50.10\"", "address = \"192.168.50.10\"\nsip_widest4 = 33"},
			`t.toml:14:15: pbx.sip_widest4: must be a prefix length from 1 to 32 (it is 33)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, edit(t, tc.edit...), tc.want)
		})
	}
}

func TestWideSIPPeersAllowedFromAnywhere(t *testing.T) {
	c := wantOK(t, edit(t, trunkNets, `networks = ["0.0.0.0/1", "128.0.0.0/1"]`, `address = "192.168.50.10"`, anywhere))
	if len(c.Warnings) != 1 || !strings.HasPrefix(c.Warnings[0], "SIP is open to the whole internet (pbx.allow_sip_from_anywhere = true)") {
		t.Errorf("want the world-open SIP warning, got %q", c.Warnings)
	}
	wantOK(t, edit(t, trunkNets, `networks = ["10.0.0.0/9", "10.1.0.0/16", "192.0.2.10", "2001:db8::/32"]`))
}

func TestHostBitsRefused(t *testing.T) {
	fwd := "[forward.vpn]\nprotocol = \"udp\"\nports = \"51820\"\nto = \"192.168.50.5\"\nfrom = [\"198.51.100.77/29\"]"
	for _, tc := range []struct {
		name string
		edit []string
		want string
	}{
		{"admin IPv6 host with an ISP's length", []string{adminNets, `networks = ["2001:db8::1/32"]`},
			`t.toml:17:13: admin.networks: 2001:db8::1/32 has host bits set: did you mean 2001:db8::1/128 or 2001:db8::/32?`},
		{"SIP peer", []string{trunkNets, `networks = ["203.0.113.65/27"]`},
			`t.toml:15:13: sip_peers.trunk.networks: 203.0.113.65/27 has host bits set: did you mean 203.0.113.65/32 or 203.0.113.64/27?`},
		{"forward from", []string{"", fwd},
			`t.toml:23:9: forward.vpn.from: 198.51.100.77/29 has host bits set: did you mean 198.51.100.77/32 or 198.51.100.72/29?`},
		{"blocklist protect", []string{"", "[blocklist]\nprotect = [\"198.51.100.7/24\"]"},
			`t.toml:20:12: blocklist.protect: 198.51.100.7/24 has host bits set: did you mean 198.51.100.7/32 or 198.51.100.0/24?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, edit(t, tc.edit...), tc.want)
		})
	}
	// The box's own addresses carry their subnet's length on purpose (base has both).
	c := wantOK(t, edit(t, `address = "198.51.100.2/30"`, "address = \"198.51.100.2/30\"\naddress6 = \"2001:db8:f1::2/64\""))
	if c.LAN.Addresses[0].String() != "192.168.50.1/24" || c.Uplink.Primary.Address6.String() != "2001:db8:f1::2/64" {
		t.Errorf("interface addresses changed: %v %v", c.LAN.Addresses, c.Uplink.Primary.Address6)
	}
}

func TestForwardsMustLeaveManagementPorts(t *testing.T) {
	pbx := func(line string) []string {
		return []string{`address = "192.168.50.10"`, "address = \"192.168.50.10\"\n" + line}
	}
	fwd := func(ports string) []string {
		return []string{"", "[forward.cam]\nprotocol = \"udp\"\nports = \"" + ports + "\"\nto = \"192.168.50.5\"\nfrom = [\"0.0.0.0/0\"]"}
	}
	for _, tc := range []struct {
		name string
		edit []string
		want string
	}{
		{"tunnel on SSH", pbx("tunnel_port = 22"),
			`t.toml:14:15: pbx.tunnel_port: port 22 is the box's own SSH port (admin.ssh_port): forwarding it to the PBX would take it away from the box; use another port`},
		{"SIP on the web port", pbx("sip_port = 80"),
			`t.toml:14:12: pbx.sip_port: port 80 is the box's own web port (admin.web_ports): forwarding it to the PBX would take it away from the box; use another port`},
		{"SIP TLS on HTTPS", pbx("sip_tls_port = 443"),
			`t.toml:14:16: pbx.sip_tls_port: port 443 is the box's own web port (admin.web_ports): forwarding it to the PBX would take it away from the box; use another port`},
		{"media over SSH", pbx(`rtp_ports = "10-100"`),
			`t.toml:14:14: pbx.rtp_ports: ports 10-100 take 22, the box's own SSH port (admin.ssh_port): forwarding them to the PBX would take it away from the box; use other ports`},
		{"PBX web on a moved SSH port", append(pbx("web_ports = [2222]"), adminNets, adminNets+"\nssh_port = 2222"),
			`t.toml:14:14: pbx.web_ports: port 2222 is the box's own SSH port (admin.ssh_port): forwarding it to the PBX would take it away from the box; use another port`},
		{"a forward on the status page", append(fwd("8080"), "", "[web]\nport = 8080"),
			`t.toml:21:10: forward.cam.ports: port 8080 is the box's own status page port (web.port): forwarding it to 192.168.50.5 would take it away from the box; use another port`},
		{"a forward on the page's HTTPS", append(fwd("8443"), "", "[web]\nhttps_port = 8443"),
			`t.toml:21:10: forward.cam.ports: port 8443 is the box's own status page HTTPS port (web.https_port): forwarding it to 192.168.50.5 would take it away from the box; use another port`},
		{"the page's HTTPS on SSH", []string{"", "[web]\nhttps_port = 22"},
			`t.toml:20:14: web.https_port: port 22 is the box's SSH port (admin.ssh_port): the status page and SSH cannot share it`},
		{"the status page on SSH", []string{"", "[web]\nport = 22"},
			`t.toml:20:8: web.port: port 22 is the box's SSH port (admin.ssh_port): the status page and SSH cannot share it`},
		{"the web ports on SSH", []string{adminNets, adminNets + "\nweb_ports = [80, 22]"},
			`t.toml:18:14: admin.web_ports: port 22 is the box's SSH port (admin.ssh_port): the web pages and SSH cannot share it`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, edit(t, tc.edit...), tc.want)
		})
	}
	// With the box's pages elsewhere, 80 and 443 are free for a LAN host.
	wantOK(t, edit(t, append(fwd("80"), adminNets, adminNets+"\nweb_ports = [8080, 8443]", "", "[web]\nhttps_port = 8443", "", "[forward.www]\nprotocol = \"tcp\"\nports = \"443\"\nto = \"192.168.50.6\"\nfrom = [\"0.0.0.0/0\"]")...))
}

func TestInterfaceNamesTheKernelRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit []string
		want string
	}{
		{"16 bytes", []string{`interface = "lan0"`, `interface = "lan0123456789abc"`},
			`t.toml:3:14: lan.interface: "lan0123456789abc" is 16 bytes long: the kernel takes interface names of at most 15`},
		{"a path", []string{`interface = "wan0"`, `interface = "../wan0"`},
			`t.toml:6:14: uplink.primary.interface: "../wan0" contains "/", which the kernel refuses in interface names (no /, : or spaces)`},
		{"dot-dot", []string{`interface = "lte0"`, `interface = ".."`},
			`t.toml:10:14: uplink.backup.interface: ".." is not an interface name the kernel takes`},
		{"an alias", []string{`interface = "lan0"`, `interface = "lan0:1"`},
			`t.toml:3:14: lan.interface: "lan0:1" contains ":", which the kernel refuses in interface names (no /, : or spaces)`},
		{"a space in sipguard", []string{"", "[sipguard]\ninterfaces = [\"lan0\", \"lan 1\"]"},
			`t.toml:20:15: sipguard.interfaces: "lan 1" contains " ", which the kernel refuses in interface names (no /, : or spaces)`},
		{"empty in sipguard", []string{"", "[sipguard]\ninterfaces = [\"\"]"},
			`t.toml:20:15: sipguard.interfaces: an interface name is required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, edit(t, tc.edit...), tc.want)
		})
	}
	wantOK(t, edit(t, `interface = "lan0"`, `interface = "lan0123456789ab"`, "", "[sipguard]\ninterfaces = [\"lan0123456789ab\", \"eth0.100\"]"))
}

func TestSizesAndCharacters(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit []string
		want string
	}{
		{"a 65-character site", []string{`site = "Test"`, `site = "` + strings.Repeat("é", 65) + `"`},
			`t.toml:1:9: site: is too long (65 characters; at most 64)`},
		{"a newline in the site", []string{`site = "Test"`, `site = "Test\r\nBcc: x@example.com"`},
			`t.toml:1:9: site: contains the control character U+000D: not allowed, it could forge lines in logs and emails`},
		{"a bidi override in an uplink name", []string{`interface = "wan0"`, "interface = \"wan0\"\nname = \"FTTC\u202e\""},
			`t.toml:7:9: uplink.primary.name: contains the control character U+202E: not allowed, it could forge lines in logs and emails`},
		{"a control character in a peer name", []string{`[sip_peers.trunk]`, `[sip_peers."trunk\u0007"]`},
			`t.toml:14:1: sip_peers."trunk\u0007": the name contains the control character U+0007: not allowed, it could forge lines in logs and emails`},
		{"a 65-character peer name", []string{`[sip_peers.trunk]`, `[sip_peers.` + strings.Repeat("p", 65) + `]`},
			`t.toml:14:1: sip_peers.` + strings.Repeat("p", 65) + `: the name is too long (65 characters; at most 64)`},
		{"a 257-byte server", []string{"", "[notify]\nserver = \"" + strings.Repeat("m", 253) + ":587\""},
			`t.toml:20:11: notify.server: is too long (257 bytes; at most 256)`},
		{"a 257-byte address", []string{"", "[web]\nlisten = [\"" + strings.Repeat("1", 257) + "\"]"},
			`t.toml:20:11: web.listen: is too long (257 bytes; at most 256)`},
		{"a bad host name", []string{"", "[web]\nhostnames = [\"edge.office.lan\", \"evil.com/x\"]"},
			`t.toml:20:14: web.hostnames: "evil.com/x" is not a host name (like "edge.office.lan")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, edit(t, tc.edit...), tc.want)
		})
	}
	wantOK(t, edit(t, `site = "Test"`, `site = "`+strings.Repeat("é", 64)+`"`))
}

func TestFileOver1MiB(t *testing.T) {
	big := []byte(base + "#" + strings.Repeat("x", MaxFileSize-len(base)))
	_, err := Parse("big.toml", big)
	if err == nil || err.Error() != "big.toml: the file is 1048577 bytes; a config may be at most 1 MiB (1048576 bytes): is this the right file?" {
		t.Fatalf("want the file refused, got %v", err)
	}
	path := filepath.Join(t.TempDir(), "appliance.toml")
	if err := os.WriteFile(path, append(big, make([]byte, 50<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || err.Error() != path+": the file is 53477377 bytes; a config may be at most 1 MiB (1048576 bytes): is this the right file?" {
		t.Fatalf("want the file refused, got %v", err)
	}
	if _, err := Parse("ok.toml", big[:MaxFileSize]); err != nil {
		t.Errorf("a file of exactly 1 MiB must parse: %v", err)
	}
}

func TestTypeErrorsInPlainWords(t *testing.T) {
	pbx := func(line string) []string {
		return []string{`address = "192.168.50.10"`, "address = \"192.168.50.10\"\n" + line}
	}
	for _, tc := range []struct {
		name string
		edit []string
		want string
	}{
		{"a quoted port", pbx(`sip_port = "5060"`),
			`t.toml:14:13: pbx.sip_port: must be a number, got the text "5060"`},
		{"a port too big", pbx("sip_port = 70000"),
			`t.toml:14:12: pbx.sip_port: must be a port number from 1 to 65535 (0: off), got 70000`},
		{"one network not in a list", []string{adminNets, `networks = "192.0.2.30/32"`},
			`t.toml:17:13: admin.networks: must be a list in [brackets], got the text "192.0.2.30/32"`},
		{"a bool as text", pbx(`allow_sip_from_anywhere = "yes"`),
			`t.toml:14:28: pbx.allow_sip_from_anywhere: must be true or false, got the text "yes"`},
		{"a duration in words", []string{"", "[web]\nsession = \"eight hours\""},
			`t.toml:20:12: web.session: must be a duration like "30s", "5m" or "1h", got the text "eight hours"`},
		{"a number for a section", []string{`site = "Test"`, "site = \"Test\"\nhal = 5"},
			`t.toml:2:7: hal: must be a table ([section] or { key = value }), got the number 5`},
		{"a table for text", []string{`site = "Test"`, `site = { name = "x" }`},
			`t.toml:1:9: site: must be text in quotes, got a table`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, edit(t, tc.edit...), tc.want)
		})
	}
}

// TestTypeErrorsAllReported: every type error in the file at once, with the bad value of
// each list element, not only the first the library stops at.
func TestTypeErrorsAllReported(t *testing.T) {
	src := edit(t, `site = "Test"`, `site = 5`, `address = "192.168.50.10"`, "address = \"192.168.50.10\"\nsip_port = \"5060\"",
		trunkNets, `networks = ["192.0.2.300", "192.0.2.10"]`, adminNets, `networks = ["x", 5]`)
	_, err := Parse("t.toml", []byte(src))
	want := strings.Join([]string{
		`t.toml:1:8: site: must be text in quotes, got the number 5`,
		`t.toml:14:13: pbx.sip_port: must be a number, got the text "5060"`,
		`t.toml:16:13: sip_peers.trunk.networks: "192.0.2.300" is not an IP address or network (like 192.0.2.0/24)`,
		`t.toml:18:13: admin.networks: "x" is not an IP address or network (like 192.0.2.0/24)`,
		`t.toml:18:13: admin.networks: "5" is not an IP address or network (like 192.0.2.0/24)`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}
