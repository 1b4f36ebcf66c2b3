package relay

import (
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/officeedge/appliance/netcfg"
)

func pubKey(t *testing.T) string {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().String()
}

func twoOffices(t *testing.T) string {
	return `public_interface = "eth0"
admin_networks = ["203.0.113.200/32"]

[office.hq]
public_key = "` + pubKey(t) + `"
tunnel = "10.254.0.0/30"
rtp_ports = "10000-10999"
trunk_networks = ["192.0.2.0/28"]

[office.branch]
public_key = "` + pubKey(t) + `"
tunnel = "10.254.0.4/30"
sip_port = 5070
sip_transports = ["udp"]
rtp_ports = "11000-11999"
trunk_networks = ["198.51.100.0/28"]
`
}

// The made firewall: the first office (by name) is the PBX, the other a forward, each from
// its own trunks; WireGuard open; SSH from the admin network only.
func TestFirewallFromRelayConfig(t *testing.T) {
	c, err := ParseConfig("relay.toml", []byte(twoOffices(t)))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := c.Firewall()
	if err != nil {
		t.Fatal(err)
	}
	text := netcfg.Build(fw).Text()
	for _, want := range []string{
		`udp dport 5070 counter dnat ip to 10.254.0.6:5070`, // branch sorts first: the "PBX"
		`ip daddr 10.254.0.6 udp dport 11000-11999 ip saddr @sip_peers4 ct status dnat counter accept`,
		`udp dport 5060 counter dnat ip to 10.254.0.2:5060`,
		`ip daddr 10.254.0.2 udp dport 10000-10999 ip saddr @fwd_hq_rtp4 ct status dnat counter accept`,
		`iifname @uplinks udp dport 51830 counter accept`,
		`iifname @uplinks ip saddr @admin4 tcp dport 22 counter accept`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the relay's firewall has no %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "tcp dport 5070 counter dnat") {
		t.Errorf("branch's SIP is udp only, but its firewall forwards tcp:\n%s", text)
	}
}

// Every problem names the file, line, column and relay.toml field, also those the
// appliance's own checks find in the firewall made from it.
func TestConfigErrors(t *testing.T) {
	key := pubKey(t)
	for _, tc := range []struct{ name, file, want string }{
		{"tunnel host bits", "public_interface = \"eth0\"\n[office.hq]\npublic_key = \"" + key + "\"\ntunnel = \"10.254.0.1/30\"\ntrunk_networks = [\"192.0.2.0/28\"]\n",
			"relay.toml:4:11: office.hq.tunnel: 10.254.0.1/30 has host bits set"},
		{"bad key", "public_interface = \"eth0\"\n[office.hq]\npublic_key = \"nope\"\ntunnel = \"10.254.0.0/30\"\ntrunk_networks = [\"192.0.2.0/28\"]\n",
			"relay.toml:3:15: office.hq.public_key: not a WireGuard public key"},
		{"syntax", "public_interface = \"eth0\"\n[office.hq]\nsip_port = 70000\n",
			"relay.toml:3:"},
		{"unknown key", "public_interface = \"eth0\"\nlisten_prot = 1\n[office.hq]\npublic_key = \"" + key + "\"\ntunnel = \"10.254.0.0/30\"\ntrunk_networks = [\"192.0.2.0/28\"]\n",
			"relay.toml:2:15: listen_prot: unknown setting"},
		{"ports overlap", strings.Replace(twoOffices(t), `rtp_ports = "11000-11999"`, `rtp_ports = "10500-11999"`, 1),
			"relay.toml:7:14: office.hq.rtp_ports: 10000-10999 overlaps office \"branch\"'s ports 10500-11999"},
		{"whole internet as admin", strings.Replace(twoOffices(t), `["203.0.113.200/32"]`, `["0.0.0.0/0"]`, 1),
			"relay.toml:2:19: admin_networks: 0.0.0.0/0 would open SSH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("relay.toml", []byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error with %q", err, tc.want)
			}
		})
	}
}
