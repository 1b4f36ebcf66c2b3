package sipguard_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/sipguard"
)

// A scanner's packet with the source address of something the box depends on (its DNS
// resolvers, configured and learned by DHCP, its NTP server, the CrowdSec LAPI, an off-site
// backup destination) blocks nothing: the owner refuses it, and sipguard says why. Each is
// sent from a host that owns the address, as a forger's packet would arrive. An address
// the box does not depend on is blocked by the same packet (briefly: it proved nothing).
func TestForgedProtectedSourcesBlockNothing(t *testing.T) {
	t.Parallel()
	protected := map[string]string{ // address: what the refusal must name
		"192.0.2.63":  "DNS resolver of uplink",
		"192.0.2.54":  "DHCP lease gave",
		"192.0.2.123": "NTP server",
		"192.0.2.80":  "CrowdSec LAPI",
		"192.0.2.22":  "backup destination",
	}
	const control = "192.0.2.78"
	s := newSiteWith(t, "", func(c *config.Config) {
		c.DNS.Resolvers.Primary = []config.Addr{{Addr: netip.MustParseAddr("192.0.2.63")}}
		c.Time.Servers = []string{"192.0.2.123"}
		c.CrowdSec.Enabled, c.CrowdSec.URL = true, "https://192.0.2.80:8080"
		c.Backup.Dir = t.TempDir()
		c.Backup.Destinations = []config.BackupDest{{Name: "offsite", Kind: "sftp", Address: "192.0.2.22:22"}}
	})
	// What the wan part hands the owner when a DHCP lease names a resolver.
	if err := s.w.SetProtected("wan", netcfg.LearnedResolvers("LTE", []netip.Addr{netip.MustParseAddr("192.0.2.54")})); err != nil {
		t.Fatal(err)
	}
	send := func(src string) {
		t.Helper()
		if _, err := s.l.Run(lab.HostAttacker, "ip", "addr", "add", src+"/24", "dev", "eth0", "nodad"); err != nil {
			t.Fatal(err)
		}
		c, err := s.l.DialUDP(lab.HostAttacker, src+":5060", wan+":5060")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(options(src+":5060", "forged-"+src, "friendly-scanner"))); err != nil {
			t.Fatal(err)
		}
	}
	for a := range protected {
		send(a)
	}
	send(control)
	s.waitBlocked(control, 5*time.Second)
	for a, why := range protected {
		labtest.WaitFor(t, "sipguard to say why "+a+" is not blocked", 5*time.Second, func() bool {
			for _, e := range s.events("sipguard.protected") {
				if e.Fields["addr"] == a && strings.Contains(e.Message, why) {
					return true
				}
			}
			return false
		})
	}
	bl := s.blocked()
	for a := range protected {
		if b, ok := bl[netip.MustParseAddr(a)]; ok {
			t.Errorf("%s (%s) is in the kernel's blocklist: %+v", a, protected[a], b)
		}
	}
	if len(bl) != 1 {
		t.Errorf("blocklist %v, want the unprotected %s alone", bl, control)
	}
	if b := bl[netip.MustParseAddr(control)]; b.Expires > sipguard.DefaultUnprovenBlockTime {
		t.Errorf("the forged scanner is blocked for %s, more than the unproven %s", b.Expires, sipguard.DefaultUnprovenBlockTime)
	}
	for _, e := range s.events("sipguard.protected") {
		t.Logf("%s", e.Message)
	}
}
