package config

import (
	"strings"
	"testing"
)

func TestVPNExample(t *testing.T) {
	src := strings.Replace(string(Example()), "[vpn]\nenabled = false", "[vpn]\nenabled = true", 1)
	c, err := Parse("example.toml", []byte(src))
	if err != nil {
		t.Fatalf("the example's [vpn], switched on, must pass: %v", err)
	}
	v := c.VPN
	if v.Interface != "wg0" || v.ListenPort != 51820 || v.EndpointHostPort() != "office.example.net:51820" {
		t.Errorf("defaults: %+v", v)
	}
	p := v.Peers["alice_mobile"]
	if p == nil || len(p.Reach) != 3 || p.Reach[0].Keyword != ReachSIP {
		t.Fatalf("alice_mobile: %+v", p)
	}
	// The provisioning server comes from [[dhcp.provision]] url.
	if len(v.Provisioning) != 1 || v.Provisioning[0].String() != "tcp/192.168.1.10:5001" {
		t.Errorf("provisioning = %v, want tcp/192.168.1.10:5001", v.Provisioning)
	}
	if ps := v.PeerPrefixes(); len(ps) != 1 || ps[0].String() != "10.99.0.2/32" {
		t.Errorf("PeerPrefixes = %v", ps)
	}
}

func TestVPNErrors(t *testing.T) {
	head := base + "[vpn]\nenabled = true\naddress = \"10.99.0.1/24\"\nendpoint = \"office.example.net\"\n"
	for _, c := range []struct{ extra, want string }{
		{"[vpn.peers.a]\naddress = \"10.98.0.2\"\n",
			`t.toml:23:12: vpn.peers.a.address: 10.98.0.2 is not a free host address in the tunnel's 10.99.0.0/24`},
		{"[vpn.peers.a]\naddress = \"10.99.0.2\"\n[vpn.peers.b]\naddress = \"10.99.0.2\"\n",
			`t.toml:25:12: vpn.peers.b.address: 10.99.0.2 is already peer "a"'s address`},
		{"[vpn.peers.a]\naddress = \"10.99.0.2\"\npublic_key = \"not-a-key\"\n",
			`t.toml:24:15: vpn.peers.a.public_key: not a WireGuard public key`},
		{"[vpn.peers.a]\naddress = \"10.99.0.2\"\nreach = [\"tcp/192.0.2.9:22\"]\n",
			`t.toml:24:10: vpn.peers.a.reach: tcp/192.0.2.9:22 is not on the LAN`},
		{"[vpn.peers.a]\naddress = \"10.99.0.2\"\nreach = [\"everything\"]\n",
			`t.toml:24:10: vpn.peers.a.reach: "everything" is not sip, rtp, provisioning, pbx_web, box or a LAN target`},
		{"[vpn.peers.a]\naddress = \"10.99.0.1\"\n", `vpn.peers.a.address: 10.99.0.1 is not a free host address`},
		{"[vpn.peers.\"a b\"]\naddress = \"10.99.0.2\"\n", `vpn.peers."a b": the name "a b" must be 1-32 of letters`},
		{"listen_port = 22\n", `t.toml:22:15: vpn.listen_port: port 22 is the box's own SSH port`},
	} {
		_, err := Parse("t.toml", []byte(head+c.extra))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got: %v\nwant: %s", c.extra, err, c.want)
		}
	}
	if _, err := Parse("t.toml", []byte(strings.Replace(head, "10.99.0.1/24", "192.168.50.200/24", 1))); err == nil || !strings.Contains(err.Error(), "vpn.address: 192.168.50.0/24 overlaps the LAN's 192.168.50.0/24") {
		t.Errorf("a tunnel on the LAN's network: %v", err)
	}
	if _, err := Parse("t.toml", []byte(strings.Replace(base, "[pbx]\n", "[pbx]\nweb_from = \"vpn\"\n", 1))); err == nil || !strings.Contains(err.Error(), `t.toml:13:13: pbx.web_from: "vpn" while [vpn] is off`) {
		t.Errorf("web_from = vpn without [vpn]: %v", err)
	}
	if _, err := Parse("t.toml", []byte(strings.Replace(head, "endpoint = \"office.example.net\"\n", "", 1))); err == nil || !strings.Contains(err.Error(), "vpn.endpoint: the box's public name or address") {
		t.Errorf("no endpoint: %v", err)
	}
}
