package clock_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/officeedge/appliance/internal/clock"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// An SNTP flood from one LAN device costs the server no goroutine and no log line per
// packet, and the PBX still gets the time meanwhile (beevik/ntp from the PBX's namespace).
func TestSNTPFlood(t *testing.T) {
	// A clock synced from a real NTP server (chronyd on the internet) through the FTTC line.
	l := timeLab(t)
	var logBuf labtest.LogBuffer
	c := clock.New(clock.Options{Servers: []string{lab.Probe4}, Interval: time.Hour, StateFile: filepath.Join(t.TempDir(), "clock"),
		Set: func(time.Time) error { return nil }, Log: slog.New(slog.NewTextHandler(&logBuf, nil)), Dial: dialFTTC(l)})
	ctx, run := serveLAN(t, l, c)
	run()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := c.WaitTrusted(wctx); err != nil {
		t.Fatalf("clock not synced: %v; state %+v", err, c.State())
	}
	pbxQuery := func() (*ntp.Response, error) { return sntpQuery(l, lab.HostPBX, 500*time.Millisecond) }
	for deadline := time.Now().Add(5 * time.Second); ; {
		r, err := pbxQuery()
		if err == nil && r.Validate() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SNTP from the PBX before the flood: %v %+v", err, r)
		}
	}
	base := runtime.NumGoroutine()

	// The phone floods: client requests as fast as it can send them, for 3 s at most.
	conn, err := l.DialUDP(lab.HostPhone, "", lab.BoxLAN4+":123")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		req := make([]byte, 48)
		req[0] = 4<<3 | 3 // version 4, client
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			select {
			case <-stop:
				return
			default:
			}
			for range 100 {
				_, _ = conn.Write(req)
			}
			peak.Store(max(peak.Load(), int64(runtime.NumGoroutine())))
			time.Sleep(time.Millisecond)
		}
	}()
	for i := range 10 {
		var r *ntp.Response
		var err error
		for range 3 { // a try may be lost in the flood; an NTP client tries again
			if r, err = pbxQuery(); err == nil {
				break
			}
		}
		if err != nil || r.Validate() != nil || r.Stratum == 0 {
			t.Errorf("SNTP query %d from the PBX during the flood: %v %+v", i+1, err, r)
		}
	}
	close(stop)
	wg.Wait()
	if peak.Load() > int64(base+5) {
		t.Errorf("%d goroutines during the flood, %d before: the server must not start any per packet", peak.Load(), base)
	}
	log := logBuf.String()
	if n := strings.Count(log, "over the per-client limit"); n != 1 || !strings.Contains(log, lab.Phone4) {
		t.Errorf("the flood made %d log lines, want one naming the phone (the summary comes each minute):\n%s", n, log)
	}
}
