package netcfg

import (
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/lab"
)

const labVPN = `
[vpn]
enabled = true
address = "10.99.0.1/24"
endpoint = "office.example.net"
dns = ["192.168.50.1", "192.168.50.53", "9.9.9.9"]

[vpn.peers.alice]
address = "10.99.0.2"

[vpn.peers.admin_laptop]
address = "10.99.0.9"
reach = ["box", "tcp/192.168.50.20:3389"]
`

// The VPN zone as a user reads it: the WireGuard port on the uplinks, each peer to what it
// may reach and nothing else, all before the chains' closing notes of what is dropped.
func TestVPNZone(t *testing.T) {
	src := strings.Replace(string(lab.Config), "web_from = \"admin\"", "web_from = \"vpn\"", 1) + labVPN
	text := Build(mustParse(t, "lab.toml", []byte(src))).Text()
	for _, want := range []string{
		`iifname @uplinks udp dport 51820 counter accept comment "WireGuard from the remote phones"`,
		`iifname @vpn ip saddr 10.99.0.2 ip daddr 192.168.50.10 udp dport 5060 counter accept comment "vpn alice: SIP"`,
		`iifname @vpn ip saddr 10.99.0.2 ip daddr 192.168.50.10 tcp dport 5061 counter accept comment "vpn alice: SIP TLS"`,
		`iifname @vpn ip saddr 10.99.0.2 ip daddr 192.168.50.10 udp dport 9000-10999 counter accept comment "vpn alice: RTP"`,
		`iifname @vpn ip saddr 10.99.0.9 tcp dport 22 counter accept comment "vpn admin_laptop: the box's SSH"`,
		`iifname @vpn ip saddr 10.99.0.9 ip daddr 192.168.50.20 tcp dport 3389 counter accept comment "vpn admin_laptop: tcp/192.168.50.20:3389"`,
		`iifname @vpn ip daddr 192.168.50.10 tcp dport 5001 counter accept comment "vpn: PBX web"`,
		`iifname @lan ip saddr 192.168.50.10 oifname @vpn counter accept comment "the PBX to the VPN phones"`,
		`iifname @vpn ip daddr 192.168.50.1 udp dport 53 counter accept comment "vpn: DNS"`,
		`iifname @vpn ip daddr 192.168.50.53 tcp dport 53 counter accept comment "vpn: DNS"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if strings.Contains(text, "9.9.9.9") {
		t.Error("a public DNS server is in the VPN zone: the phones reach it without the tunnel")
	}
	for _, line := range strings.Split(text, "\n") {
		// alice has the default reach: not the box, not the office PCs.
		if strings.Contains(line, "10.99.0.2") && (strings.Contains(line, "dport 22 ") || strings.Contains(line, "192.168.50.20")) {
			t.Errorf("alice may reach more than SIP and RTP: %s", line)
		}
		// web_from = "vpn" takes the PBX's web port off the uplinks.
		if strings.Contains(line, "@uplinks") && strings.Contains(line, "dport 5001") {
			t.Errorf("the PBX web is still forwarded from the internet: %s", line)
		}
	}
	for _, chain := range []string{"chain input {", "chain forward {"} {
		body := text[strings.Index(text, chain):]
		body = body[:strings.Index(body, "\n\t}")]
		lines := strings.Split(strings.TrimSpace(body), "\n")
		last := strings.LastIndex(body, "@vpn")
		if !strings.Contains(lines[len(lines)-1], `drop comment "everything else"`) || last < 0 || last > strings.Index(body, "note dropped") {
			t.Errorf("%s: the VPN rules must come before what is dropped is noted:\n%s", chain, body)
		}
	}
}

// Without [vpn] the ruleset has no trace of it (the golden files hold that too).
func TestVPNOff(t *testing.T) {
	if text := Build(mustParse(t, "lab.toml", lab.Config)).Text(); strings.Contains(text, "vpn") || strings.Contains(text, "51820") {
		t.Error("the VPN zone is in the ruleset while [vpn] is off")
	}
}
