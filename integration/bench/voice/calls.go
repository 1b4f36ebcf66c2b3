package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/officeedge/appliance/integration/benchstat"
	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/integration/callslab"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/calls"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/daemon"
)

// callTrials is how many calls benchCalls times (each about 10 s).
const callTrials = 5

// benchCalls times the call-quality part with the appliance in the lab and real calls
// through it (sipp from the trunk to the PBX, RTP both ways at 50 packets a second):
//   - call_quality_visible_s: from the call's answer (the 200 OK as the box saw it) until
//     its loss and jitter both ways are first on the control API (polled every 20 ms);
//   - one_way_audio_alert_s: from the trunk's media being dropped at its ISP until the
//     one-way-audio alert is up (one_way_after is 2 s: that much is by design).
func benchCalls() error {
	dir, bin, done, err := build.TempDaemon("bench-calls-")
	if err != nil {
		return err
	}
	defer done()
	s, err := sitelab.Start("bcalls", bin, dir, sitelab.Config())
	if err != nil {
		return err
	}
	defer s.Close()
	var visible, alert []float64
	for i := 0; i < callTrials; i++ {
		v, a, err := callTrial(s, dir, strconv.Itoa(301+i))
		if err != nil {
			return fmt.Errorf("call %d: %w", i+1, err)
		}
		visible, alert = append(visible, v), append(alert, a)
	}
	fmt.Printf("call_quality_visible_s p50=%.2f p95=%.2f\n", benchstat.Pct(visible, 50), benchstat.Pct(visible, 95))
	fmt.Printf("one_way_audio_alert_s p50=%.2f p95=%.2f\n", benchstat.Pct(alert, 50), benchstat.Pct(alert, 95))
	return nil
}

// callTrial places one call to ext and returns both figures in seconds.
func callTrial(s *sitelab.Site, dir, ext string) (visible, alert float64, err error) {
	l := s.Lab
	cdir := filepath.Join(dir, "call-"+ext)
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return 0, 0, err
	}
	call, err := callslab.Place(l, cdir, callslab.Options{Ext: ext, Length: 8 * time.Second})
	if err != nil {
		return 0, 0, err
	}
	defer call.Close()
	c := s.Client()
	deadline := time.Now().Add(15 * time.Second)
	var seen time.Time
	var answered time.Time
	for time.Now().Before(deadline) {
		var st calls.Status
		if b, err := c.Get(daemon.PathCallsStatus); err == nil && json.Unmarshal(b, &st) == nil {
			for _, k := range st.Active {
				if k.Extension == ext && k.ToPBX.Packets > 0 && k.FromPBX.Packets > 0 {
					seen, answered = time.Now(), k.Answered
				}
			}
		}
		if !seen.IsZero() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if seen.IsZero() {
		return 0, 0, fmt.Errorf("the call never showed with media both ways\n%s", call.Output())
	}
	time.Sleep(time.Second) // a second of two-way media before the fault
	if err := callslab.DropTrunkMedia(l, ""); err != nil {
		return 0, 0, err
	}
	dropped := time.Now()
	key := "calls.oneway/" + ext
	var raised time.Time
	for time.Now().Before(dropped.Add(15 * time.Second)) {
		var as []alerts.Alert
		if b, err := c.Get(control.PathAlerts); err == nil && json.Unmarshal(b, &as) == nil {
			for _, a := range as {
				if a.Key == key && a.Active {
					raised = time.Now()
				}
			}
		}
		if !raised.IsZero() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if raised.IsZero() {
		return 0, 0, fmt.Errorf("no one-way-audio alert within 15 s of the drop")
	}
	if err := callslab.Undrop(l); err != nil {
		return 0, 0, err
	}
	if err := call.Wait(30 * time.Second); err != nil {
		return 0, 0, err
	}
	return seen.Sub(answered).Seconds(), raised.Sub(dropped).Seconds(), nil
}
