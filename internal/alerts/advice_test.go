package alerts

import (
	"strings"
	"testing"
)

// Every alert the parts raise (grep -rn 'Raise(') has its own advice, and a key with a
// source appended takes its prefix's.
func TestAdvice(t *testing.T) {
	generic := Advice("nobody.raises.this")
	for _, key := range []string{
		KeyHALBoard, KeyTollFraud + "/192.0.2.66", KeySIPSiteUser + "/192.0.2.7/1001", "firewall.write", "config",
		"part.sipguard", "web.listen", "web.tls", "dhcp.refused", "dhcp.leases", "crowdsec.pull", "crowdsec.push",
		"crowdsec.refused", "peers.resolve.sip_peers.itsp.sip.example.net", "backup.stale.nas",
		"config.reverted", "history.file", "wan.budget.backup",
	} {
		if a := Advice(key); a == generic || a == "" {
			t.Errorf("%s has no advice of its own", key)
		}
	}
	if Advice(KeyTollFraud+"/192.0.2.66") != Advice(KeyTollFraud) {
		t.Error("a toll-fraud alert with its source lost the toll-fraud advice")
	}
	// A prefix without "." or "/" matches only itself or itself with a source.
	if Advice("configuration.other") != generic || Advice("config/x") != Advice("config") {
		t.Error("prefix matching too loose or too strict")
	}
	if !strings.Contains(Advice("part.wan"), "restarted") {
		t.Errorf("part advice %q", Advice("part.wan"))
	}
}
