package netcfg

import (
	"net/netip"
	"testing"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
)

// whyOf is the reason of the first protection covering a, as a refusal would name it.
func whyOf(ps []Protection, a string) string {
	addr := netip.MustParseAddr(a)
	for _, p := range ps {
		if p.Prefix.Contains(addr) {
			return p.Why
		}
	}
	return ""
}

// Everything the box talks to by name or address is protected, each naming what it is: the
// uplinks' resolvers, the SMTP server, the NTP servers (a name resolved too), the CrowdSec
// LAPI, the backup destinations and a PBX backups are pulled from, the feeds' servers, and
// the VPN phones' tunnel addresses.
// (Only localhost is resolved: a test sends no query off the machine.)
func TestProtectionsCoverDependencies(t *testing.T) {
	cfg, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DNS.Resolvers.Primary = []config.Addr{{Addr: netip.MustParseAddr("198.51.100.53")}}
	cfg.DNS.Resolvers.Backup = []config.Addr{{Addr: netip.MustParseAddr("203.0.113.53")}}
	cfg.Notify.Server = "198.18.25.25:587"
	cfg.Time.Servers = []string{"192.0.2.123", "localhost:123"}
	cfg.CrowdSec.Enabled, cfg.CrowdSec.URL = true, "https://198.18.80.80:8080"
	cfg.Backup.Dir = t.TempDir()
	cfg.Backup.Destinations = []config.BackupDest{
		{Name: "s3", Kind: "s3", Endpoint: "198.18.3.3:9000"},
		{Name: "vault", Kind: "sftp", Address: "[2001:db8:22::22]:22"},
	}
	cfg.Backup.PBX = []config.BackupPBX{{Name: "far", Mode: "pull", Address: "198.18.4.4:22"}}
	cfg.SIPGuard.Feeds = []config.SIPFeed{{Name: "apiban", URL: "https://198.18.5.5/list"}, {Name: "local", File: "/x"}}
	cfg.VPN.Enabled = true
	cfg.VPN.Peers = map[string]*config.VPNPeer{"alice": {Address: config.Addr{Addr: netip.MustParseAddr("10.99.0.7")}}}
	ps := Protections(cfg, "")
	for a, want := range map[string]string{
		"198.51.100.53":   "a DNS resolver of uplink FTTC ([dns.resolvers] primary)",
		"203.0.113.53":    "a DNS resolver of uplink LTE ([dns.resolvers] backup)",
		"198.18.25.25":    "the SMTP server 198.18.25.25:587",
		"192.0.2.123":     "the NTP server 192.0.2.123 ([time] servers)",
		"127.0.0.1":       "the NTP server localhost:123 ([time] servers)",
		"198.18.80.80":    "the CrowdSec LAPI https://198.18.80.80:8080",
		"198.18.3.3":      "the backup destination s3 (S3 198.18.3.3:9000)",
		"2001:db8:22::22": "the backup destination vault (SFTP [2001:db8:22::22]:22)",
		"198.18.4.4":      "the PBX far the box pulls backups from (198.18.4.4:22)",
		"198.18.5.5":      "the server of community feed apiban (https://198.18.5.5/list)",
		"10.99.0.7":       "the tunnel address of VPN phone alice",
	} {
		if got := whyOf(ps, a); got != want {
			t.Errorf("%s: protected as %q, want %q", a, got, want)
		}
	}
}

// DNS resolvers a DHCP lease gave are protected under the uplink's name.
func TestLearnedResolvers(t *testing.T) {
	ps := LearnedResolvers("LTE", []netip.Addr{netip.MustParseAddr("::ffff:203.0.113.9"), netip.MustParseAddr("2001:db8:e1::53")})
	if len(ps) != 2 || ps[0].Prefix != netip.MustParsePrefix("203.0.113.9/32") || ps[1].Prefix != netip.MustParsePrefix("2001:db8:e1::53/128") ||
		ps[0].Why != "a DNS resolver uplink LTE's DHCP lease gave" {
		t.Errorf("LearnedResolvers = %+v", ps)
	}
}

// A trunk's host names (its SIP SRV targets among them) resolved by internal/peers are
// protected as the trunk itself.
func TestResolvedTrunkTargetsProtected(t *testing.T) {
	cfg, err := config.Parse("lab.toml", lab.Config)
	if err != nil {
		t.Fatal(err)
	}
	w := &Owner{resolved: map[string][]netip.Addr{PeerKey("trunk"): {netip.MustParseAddr("198.18.60.60")}}}
	merged, _ := w.merged(cfg)
	if got := whyOf(Protections(merged, ""), "198.18.60.60"); got != "trusted SIP peer trunk (trunk)" {
		t.Errorf("an SRV target of the trunk is protected as %q", got)
	}
}
