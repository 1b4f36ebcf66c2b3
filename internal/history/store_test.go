package history

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// A store reopened after a flush reads back every series and mark; the day-long view is at
// 10 s, the week at 5-minute means, and a stop is a gap.
func TestStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil, func(f string, err error) { t.Errorf("corrupt %s: %v", f, err) })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 { // 10 minutes, then a gap of 10 minutes, then 10 more
		s.Add("uplink/primary/rtt_ms", t0.Add(time.Duration(i)*Step), 10)
		s.Add("uplink/primary/rtt_ms", t0.Add(20*time.Minute+time.Duration(i)*Step), 30)
	}
	s.Mark(Mark{T: t0.Add(15 * time.Minute), Kind: "wan.failover", Message: "primary down"})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, nil, func(f string, err error) { t.Errorf("corrupt %s: %v", f, err) })
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(30 * time.Minute)
	pts, step := r.Query("uplink/primary/rtt_ms", t0, now, now)
	if step != 10*time.Second || len(pts) != 120 || pts[0].V != 10 || pts[119].V != 30 {
		t.Fatalf("fine view: step %s, %d points, want 120 at 10s", step, len(pts))
	}
	for _, p := range pts {
		if p.T >= t0.Add(10*time.Minute).Unix() && p.T < t0.Add(20*time.Minute).Unix() {
			t.Fatalf("a point at %d, inside the gap", p.T)
		}
	}
	later := t0.Add(3 * 24 * time.Hour)
	pts, step = r.Query("uplink/primary/rtt_ms", later.Add(-7*24*time.Hour), later, later)
	if step != 5*time.Minute || len(pts) != 4 || pts[0].V != 10 || pts[3].V != 30 {
		t.Fatalf("week view: step %s, points %v, want four 5-minute means", step, pts)
	}
	if m := r.Marks(t0, now); len(m) != 1 || m[0].Kind != "wan.failover" {
		t.Fatalf("marks = %+v", m)
	}
	if n := r.Names(); len(n) != 1 || n[0] != "uplink/primary/rtt_ms" {
		t.Fatalf("names = %v", n)
	}
}

// The ring never grows: 9 days of samples leave 8 days of means and a day of 10 s ones,
// and a 5-minute bucket is the mean of its samples.
func TestStoreBounded(t *testing.T) {
	s, _ := Open(t.TempDir(), nil, nil)
	end := t0.Add(9 * 24 * time.Hour)
	for tt := t0; tt.Before(end); tt = tt.Add(Step) {
		s.Add("x", tt, float64(tt.Unix()/10%2)) // 0, 1, 0, 1: means of 0.5
	}
	se := s.series["x"]
	if len(se.rings[0].v) != 8640 || len(se.rings[1].v) != 2304 {
		t.Fatalf("ring sizes %d, %d", len(se.rings[0].v), len(se.rings[1].v))
	}
	pts, _ := s.Query("x", t0, end, end)
	if len(pts) != 2304 || math.Abs(pts[5].V-0.5) > 1e-6 {
		t.Fatalf("%d points, mean %v; want 2304 means of 0.5", len(pts), pts[5].V)
	}
}

// A series not sampled for longer than the store keeps (a probe target removed from the
// config) is dropped, file and all.
func TestStoreDropsStaleSeries(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, nil, nil)
	s.Add("target/primary/icmp:192.0.2.9/rtt_ms", t0, 5)
	s.Add("uplink/primary/rtt_ms", t0, 5)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Add("uplink/primary/rtt_ms", t0.Add(9*24*time.Hour), 5)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := s.Names(); len(n) != 1 || n[0] != "uplink/primary/rtt_ms" {
		t.Fatalf("names = %v, want the stale target gone", n)
	}
	if _, err := os.Stat(filepath.Join(dir, fileName("target/primary/icmp:192.0.2.9/rtt_ms"))); !os.IsNotExist(err) {
		t.Fatalf("the stale series' file is still there: %v", err)
	}
}

// A damaged or truncated file is reported and that series starts empty; the others load.
func TestStoreCorruptFile(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, nil, nil)
	s.Add("a", t0, 1)
	s.Add("b", t0, 2)
	s.Mark(Mark{T: t0, Kind: "wan.failover"})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	fa := filepath.Join(dir, fileName("a"))
	b, _ := os.ReadFile(fa)
	if err := os.WriteFile(fa, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "marks.json"), []byte("[{"), 0o600); err != nil {
		t.Fatal(err)
	}
	var bad []string
	r, err := Open(dir, nil, func(f string, err error) { bad = append(bad, filepath.Base(f)) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(bad, ",") != "a.ring,marks.json" {
		t.Fatalf("reported %v, want a.ring and marks.json", bad)
	}
	if p, _ := r.Query("b", t0, t0, t0); len(p) != 1 || p[0].V != 2 {
		t.Fatalf("series b = %v, want its point", p)
	}
	if p, _ := r.Query("a", t0, t0, t0); len(p) != 0 {
		t.Fatalf("series a = %v, want empty", p)
	}
	r.Add("a", t0, 5) // and it records again
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
}
