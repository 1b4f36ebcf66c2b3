package hal

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// The parts' typed state becomes the LEDs' state: the uplinks, the override and the trunks
// from wan, a block only until it is acknowledged, toll fraud until acknowledged, failing
// mail as a reason for degraded health.
func TestStateOf(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	failedOver := &wan.Status{Active: wan.Backup, Mode: wan.Auto, Uplinks: []wan.UplinkStatus{
		{Role: wan.Primary, State: wan.Down}, {Role: wan.Backup, State: wan.Up}},
		Trunks: []wan.TrunkStatus{{Name: "itsp", State: wan.Down}, {Name: "other", State: wan.Up}}}
	starting := &wan.Status{Active: wan.Primary, Mode: wan.ForceBackup, Uplinks: []wan.UplinkStatus{
		{Role: wan.Primary, State: wan.Unknown}, {Role: wan.Backup, State: wan.Unknown}}}
	for _, tc := range []struct {
		name string
		in   Sources
		want State
	}{
		{"no wan: started, on the fixed line", Sources{}, State{Started: true, Active: RolePrimary}},
		{"failed over, a trunk down", Sources{WAN: failedOver},
			State{Started: true, Active: RoleBackup, PrimaryDown: true, Degraded: []string{"trunk itsp down"}}},
		{"nothing reported yet, forced", Sources{WAN: starting}, State{Active: RolePrimary, Forced: true}},
		{"a block not yet seen", Sources{LastBlock: t0, AckedAt: t0.Add(-time.Minute)},
			State{Started: true, Active: RolePrimary, LastBlock: t0}},
		{"a block acknowledged", Sources{LastBlock: t0, AckedAt: t0}, State{Started: true, Active: RolePrimary}},
		{"toll fraud, and an acknowledged one", Sources{Alerts: []alerts.Alert{
			{Key: alerts.KeyTollFraud + "/ext100"}, {Key: alerts.KeyTollFraud, Acked: true}}},
			State{Started: true, Active: RolePrimary, TollFraud: true}},
		{"toll fraud acknowledged", Sources{Alerts: []alerts.Alert{{Key: alerts.KeyTollFraud, Acked: true}, {Key: "part.wan"}}},
			State{Started: true, Active: RolePrimary}},
		{"config refused, mail failing", Sources{ConfigError: true, MailError: "connection refused"},
			State{Started: true, Active: RolePrimary, ConfigError: true, Degraded: []string{"alert emails failing: connection refused"}}},
	} {
		got := StateOf(tc.in)
		if !reflect.DeepEqual(got.normal(), tc.want.normal()) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// The newest block is sipguard's newest claim; a person's or a feed's does not light the LED.
func TestNewestBlock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := netip.MustParsePrefix("192.0.2.66/32")
	bs := &netcfg.BlockState{Entries: []netcfg.Entry{
		{Prefix: p, Claims: []netcfg.Claim{{Source: netcfg.SourceSIPGuard, Since: t0}, {Source: netcfg.SourceManual, Since: t0.Add(time.Hour)}}},
		{Prefix: netip.MustParsePrefix("192.0.2.67/32"), Claims: []netcfg.Claim{{Source: netcfg.SourceSIPGuard, Since: t0.Add(time.Minute)}}},
	}}
	if got := NewestBlock(bs); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("newest block %s, want %s", got, t0.Add(time.Minute))
	}
	if got := NewestBlock(&netcfg.BlockState{}); !got.IsZero() {
		t.Fatalf("newest block of an empty list: %s", got)
	}
}
