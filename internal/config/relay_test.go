package config

import (
	"strings"
	"testing"
	"time"
)

func TestRelayExample(t *testing.T) {
	src := strings.Replace(string(Example()), "# endpoint = \"relay.example.net:51830\"", "endpoint = \"relay.example.net:51830\"", 1)
	src = strings.Replace(src, "# public_key = \"base64 from `appliance relay status` on the relay\"", "public_key = \"uEYQ0OdzrY4ogSEsn2UdpFrlUcnNiWpZZyk1RnOrBUM=\"", 1)
	c, err := Parse("example.toml", []byte(src))
	if err != nil {
		t.Fatalf("the example's [relay], switched on, must pass: %v", err)
	}
	r := c.Relay
	if !r.Enabled() || r.Interface != "relay0" || r.Tunnel.String() != "10.254.0.0/30" || r.ProbeInterval != time.Second ||
		r.PublicAddress != "relay.example.net" || r.Duplicate || r.AllTraffic {
		t.Errorf("defaults: %+v", r)
	}
	if r.RelayAddr().String() != "10.254.0.1" || r.BoxAddr().String() != "10.254.0.2" {
		t.Errorf("tunnel addresses: relay %s, box %s", r.RelayAddr(), r.BoxAddr())
	}
	if h, p := r.EndpointHostPort(); h != "relay.example.net" || p != 51830 {
		t.Errorf("endpoint = %s %d", h, p)
	}
	off, err := Parse("example.toml", Example())
	if err != nil || off.Relay.Enabled() {
		t.Errorf("the example's relay is off: %v %+v", err, off.Relay)
	}
}

func TestRelayErrors(t *testing.T) {
	const key = `public_key = "uEYQ0OdzrY4ogSEsn2UdpFrlUcnNiWpZZyk1RnOrBUM="` + "\n"
	head := base + "[relay]\nendpoint = \"192.0.2.40\"\n"
	for _, c := range []struct{ extra, want string }{
		{"", `t.toml:18:1: relay.public_key: the relay's WireGuard public key is required`},
		{`public_key = "nope"` + "\n", `t.toml:20:15: relay.public_key: the relay's WireGuard public key is required`},
		{key + `tunnel = "10.254.0.1/30"` + "\n", `t.toml:21:11: relay.tunnel: 10.254.0.1/30: give the network's own address (10.254.0.0/30)`},
		{key + `tunnel = "10.254.0.0/31"` + "\n", `t.toml:21:11: relay.tunnel: 10.254.0.0/31: the prefix must be /16 to /30`},
		{key + `tunnel = "192.168.50.0/30"` + "\n", `t.toml:21:11: relay.tunnel: 192.168.50.0/30 overlaps the LAN's 192.168.50.0/24`},
		{key + `tunnel = "198.51.100.0/30"` + "\n", `t.toml:21:11: relay.tunnel: 198.51.100.0/30: use a private IPv4 network`},
		{key + `interface = "wan0"` + "\n", `t.toml:21:14: relay.interface: interface "wan0" is already the LAN's, an uplink's or the VPN's`},
		{key + `interface = "a/b"` + "\n", `t.toml:21:14: relay.interface: "a/b" contains "/"`},
		{key + `probe_interval = "10ms"` + "\n", `t.toml:21:19: relay.probe_interval: must be 100ms to 10s, not 10ms`},
		{key + `public_address = "10.0.0.1"` + "\n", `t.toml:21:19: relay.public_address: 10.0.0.1 is not a public address`},
		{key + `public_address = "not a name"` + "\n", `t.toml:21:19: relay.public_address: "not a name" is not a host name`},
	} {
		_, err := Parse("t.toml", []byte(head+c.extra))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got: %v\nwant: %s", c.extra, err, c.want)
		}
	}
	for _, c := range []struct{ endpoint, want string }{
		{"10.1.2.3:51830", `t.toml:19:13: relay.endpoint: 10.1.2.3 is not a public address`},
		{"relay..example:1", `t.toml:19:13: relay.endpoint: "relay..example:1" is not a host name or address`},
		{"relay.example.net:99999", `t.toml:19:13: relay.endpoint: "relay.example.net:99999" is not a host name or address`},
	} {
		_, err := Parse("t.toml", []byte(base+"[relay]\nendpoint = \""+c.endpoint+"\"\n"+key))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("endpoint %q:\n got: %v\nwant: %s", c.endpoint, err, c.want)
		}
	}
	if _, err := Parse("t.toml", []byte(base+"[relay]\nduplicate = true\n")); err == nil || !strings.Contains(err.Error(), "t.toml:19:13: relay.duplicate: set while [relay] has no endpoint") {
		t.Errorf("duplicate without an endpoint: %v", err)
	}
	c, err := Parse("t.toml", []byte(head+key+"duplicate = true\n"))
	if err != nil || !c.Relay.Duplicate {
		t.Errorf("a good [relay]: %v", err)
	}
	if h, p := c.Relay.EndpointHostPort(); h != "192.0.2.40" || p != DefaultRelayPort || c.Relay.PublicAddress != "192.0.2.40" {
		t.Errorf("endpoint without a port: %s %d, public address %s", h, p, c.Relay.PublicAddress)
	}
}
