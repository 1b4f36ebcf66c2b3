package dhcpd

import (
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/dhcpd/dhcptest"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// TestFloodFromTheLAN: a hostile device on the LAN floods the server with REQUESTs, with
// DECLINEs, and from 200 made-up MACs trying to take names. Meanwhile a real dhclient gets
// its address again, the desk phone its static lease, and DNS's view of the names stays
// right; the lease file is written at most once a second, goroutines and log lines stay
// few, and the pool is not emptied. A real client asking for the name wpad gets an address
// but not the name.
func TestFloodFromTheLAN(t *testing.T) {
	s := newSite(t)
	lines := &countingWriter{}
	s.log = slog.New(slog.NewTextHandler(lines, nil))
	cfg := s.config(dhcpSection)
	s.host("pc1", "02:00:00:00:70:01")
	s.host("pc2", "02:00:00:00:70:02")
	s.host("ph1", "80:5e:c0:00:00:21")
	s.host("bad", "02:00:00:00:70:66")
	srv, _ := s.serve(cfg, t.TempDir())
	waitServing(t, srv, true)

	pc := s.dhclient("pc1", "pc-one")["new_ip_address"]
	inPool(t, "pc1", pc)
	if u := s.udhcpc("pc2", "eth0", "wpad"); u == nil {
		t.Fatal("the device calling itself wpad got no address")
	}
	if a, ok := srv.Hostnames()["wpad"]; ok {
		t.Errorf("a DHCP client took the name wpad (%s)", a)
	}

	fl, err := dhcptest.NewFlooder(s.l, "bad", "eth0", lab.BoxLAN4, cfg.DHCP.Pool.First, cfg.DHCP.Pool.Last)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	goroutines := runtime.NumGoroutine()
	for _, kind := range dhcptest.Kinds {
		before, start := srv.Counters(), time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- fl.Run(ctx, kind, 20_000) }()
		sent := fl.Sent()
		labtest.WaitFor(t, string(kind)+" flood under way", 10*time.Second, func() bool { return fl.Sent() > sent+5_000 })

		if got := s.dhclient("pc1", "pc-one")["new_ip_address"]; got != pc {
			t.Errorf("%s flood: the PC got %q, want its lease %s", kind, got, pc)
		}
		if u := s.udhcpc("ph1", "eth0", "phone"); u == nil || u["ip"] != "192.168.50.21" {
			t.Errorf("%s flood: the desk phone got %v, want its static 192.168.50.21", kind, u)
		}
		names := srv.Hostnames()
		if names["pc-one"].String() != pc || names["deskphone"] != netip.MustParseAddr("192.168.50.21") {
			t.Errorf("%s flood: names for DNS %v", kind, names)
		}
		if g := runtime.NumGoroutine(); g > goroutines+20 {
			t.Errorf("%s flood: %d goroutines, %d before the flood", kind, g, goroutines)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		took, c := time.Since(start), srv.Counters()
		if w := c.Writes - before.Writes; w > uint64(took/time.Second)+2 {
			t.Errorf("%s flood: the lease file was written %d times in %s", kind, w, took.Round(time.Millisecond))
		}
		if c.Dropped == before.Dropped {
			t.Errorf("%s flood: %d packets received, none dropped", kind, c.Received-before.Received)
		}
		t.Logf("%s flood: %d packets sent, %d received, %d dropped, %d lease writes in %s", kind, fl.Sent()-sent,
			c.Received-before.Received, c.Dropped-before.Dropped, c.Writes-before.Writes, took.Round(time.Millisecond))
	}

	// Not one name taken over; most of the pool still free.
	names := srv.Hostnames()
	for _, n := range []string{"wpad", "gateway", "pbx", "isatap"} {
		if a, ok := names[n]; ok {
			t.Errorf("the flood took the name %s (%s)", n, a)
		}
	}
	if names["pc-one"].String() != pc {
		t.Errorf("pc-one is %v after the floods, want %s", names["pc-one"], pc)
	}
	dynamic := 0
	for _, l := range srv.Leases() {
		if !l.Static {
			dynamic++
		}
	}
	if size := int(cfg.DHCP.Pool.Size()); dynamic > size/2 {
		t.Errorf("%d of the pool's %d addresses leased after the floods", dynamic, size)
	}
	if n := lines.n.Load(); n > 100 {
		t.Errorf("%d log lines for the floods", n)
	}
	t.Logf("%d log lines, %d leases in the pool", lines.n.Load(), dynamic)
}

// countingWriter counts log lines (and keeps the flood summaries visible with -v).
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(strings.Count(string(p), "\n")))
	return len(p), nil
}
