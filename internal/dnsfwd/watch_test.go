package dnsfwd

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/wan"
)

// The forwarder follows the active uplink when wan's watch says its state changed (no
// polling with a watch): the new uplink's resolvers, and a change of resolvers recorded.
func TestFollowsWANWatch(t *testing.T) {
	a := netip.MustParseAddr
	var mu sync.Mutex
	st := wan.Status{Active: wan.Primary, Uplinks: []wan.UplinkStatus{
		{Role: wan.Primary, Name: "FTTC", Interface: "fttc0", Address: "198.51.100.2", DNS: []netip.Addr{a("198.51.100.1")}},
		{Role: wan.Backup, Name: "LTE", Interface: "lte0", Address: "203.0.113.2", DNS: []netip.Addr{a("203.0.113.1")}}}}
	wake := make(chan struct{}, 1)
	watched := make(chan struct{})
	f := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(a("127.0.0.1"), freePort(t))}, LAN: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		WAN:     func() (wan.Status, bool) { mu.Lock(); defer mu.Unlock(); return st, true },
		Learned: func(u wan.UplinkStatus) []netip.Addr { return u.DNS },
		Watch:   func() (<-chan struct{}, func()) { close(watched); return wake, func() {} },
		Log:     slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	upstream := func() string { return f.Stats().Upstream.String() }
	select {
	case <-watched:
	case err := <-ran:
		t.Fatalf("the forwarder stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarder never watched wan")
	}
	if got, want := upstream(), "198.51.100.1:53 via FTTC (fttc0)"; got != want {
		t.Fatalf("upstream %q, want %q", got, want)
	}
	mu.Lock()
	st.Active = wan.Backup
	mu.Unlock()
	wake <- struct{}{}
	want := "203.0.113.1:53 via LTE (lte0)"
	for deadline := time.Now().Add(10 * time.Second); upstream() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the failover: upstream %q, want %q", upstream(), want)
		}
	}
}
