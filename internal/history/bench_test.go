package history

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFlush writes a box's worth of series (two uplinks with three targets each, the
// security figures) after a day of samples, and reports the bytes each flush writes to the
// SD card: the wear the history costs.
func BenchmarkFlush(b *testing.B) {
	dir := b.TempDir()
	s, _ := Open(dir, nil, nil)
	var names []string
	for _, r := range []string{"primary", "backup"} {
		names = append(names, "uplink/"+r+"/rtt_ms", "uplink/"+r+"/loss_pct", "uplink/"+r+"/rx_Bps", "uplink/"+r+"/tx_Bps")
		for _, tg := range []string{"icmp:1.1.1.1", "dns:9.9.9.9:53", "icmp:8.8.8.8"} {
			names = append(names, "target/"+r+"/"+tg+"/rtt_ms", "target/"+r+"/"+tg+"/loss_pct")
		}
	}
	names = append(names, "sipguard/findings_per_min", "sipguard/blocks_per_min", "blocklist/entries")
	ts := t0
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 8640 {
		for j, n := range names {
			s.Add(n, ts, 5+rnd.NormFloat64()*float64(j%4)) // noisy, as real round trips are (noise compresses worst)
		}
		ts = ts.Add(Step)
	}
	b.ResetTimer()
	for b.Loop() {
		for _, n := range names {
			s.Add(n, ts, 1)
		}
		ts = ts.Add(Step)
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var total int64
	files, _ := filepath.Glob(filepath.Join(dir, "*.ring"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	b.ReportMetric(float64(total), "bytes/flush")
	b.ReportMetric(float64(len(names)), "series")
	b.ReportMetric(float64(total)*float64(24*time.Hour/(10*time.Minute))/1e6, "MB/day@10min")
}
