// Package history keeps the appliance's figures over time (uplinks, probe targets, sipguard, blocks, failovers) and each uplink's data use against its budget, in bounded files on the state partition.
package history

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// Resolutions: a sample every 10 s for a day, and 5-minute means for 8 days. Each series
// is two fixed rings (about 43 KB), so the store never grows however long the box runs.
var resolutions = []struct {
	Step time.Duration
	Keep time.Duration
}{{10 * time.Second, 24 * time.Hour}, {5 * time.Minute, 8 * 24 * time.Hour}}

// Step is the finest resolution: how often a sampler should add.
var Step = resolutions[0].Step

// maxMarks bounds the failover marks kept (besides their age).
const maxMarks = 1000

const magic = "OEHIST1\n"

// ring is a fixed number of slots, slot i holding bucket i modulo len(v); NaN is a gap.
type ring struct {
	step time.Duration
	head int64     // the newest bucket (unix time / step)
	v    []float32 // means
	n    []uint16  // samples in each slot's mean (memory only: a reopened slot counts as one)
}

func newRing(step, keep time.Duration) *ring {
	n := int(keep / step)
	r := &ring{step: step, v: make([]float32, n), n: make([]uint16, n)}
	for i := range r.v {
		r.v[i] = float32(math.NaN())
	}
	return r
}

// add folds v into the mean of the bucket t falls in; a bucket older than the ring is dropped.
func (r *ring) add(t time.Time, v float64) {
	b := t.Unix() / int64(r.step/time.Second)
	size := int64(len(r.v))
	if b <= r.head-size {
		return
	}
	if b > r.head {
		// The buckets between are gaps (the sampler was stopped, the series absent).
		for x := max(r.head+1, b-size+1); x <= b; x++ {
			i := x % size
			r.v[i], r.n[i] = float32(math.NaN()), 0
		}
		r.head = b
	}
	i := b % size
	if r.n[i] == 0 || math.IsNaN(float64(r.v[i])) {
		r.v[i], r.n[i] = float32(v), 1
		return
	}
	if r.n[i] < math.MaxUint16 {
		r.n[i]++
	}
	r.v[i] += (float32(v) - r.v[i]) / float32(r.n[i])
}

// points returns the buckets from..to (inclusive times), oldest first, gaps as NaN.
func (r *ring) points(from, to time.Time) []Point {
	sec := int64(r.step / time.Second)
	size := int64(len(r.v))
	lo, hi := max(from.Unix()/sec, r.head-size+1), min(to.Unix()/sec, r.head)
	var out []Point
	for b := lo; b <= hi; b++ {
		if v := r.v[b%size]; !math.IsNaN(float64(v)) {
			out = append(out, Point{T: b * sec, V: float64(v)})
		}
	}
	return out
}

// Point is one bucket's mean; T is its start in unix seconds.
type Point struct {
	T int64
	V float64
}

// MarshalJSON writes [t, v], as charts take them.
func (p Point) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "[%d,%s]", p.T, strconv.FormatFloat(p.V, 'g', 6, 64)), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Point) UnmarshalJSON(b []byte) error {
	var a [2]float64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	p.T, p.V = int64(a[0]), a[1]
	return nil
}

// Mark is an event drawn on the charts: a failover, a failback, a forced switch.
type Mark struct {
	T       time.Time `json:"t"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
}

type series struct {
	rings []*ring
	dirty bool
}

// Store holds the series in memory and writes them to Dir on Flush: rarely, as an SD card
// wears with every write.
type Store struct {
	dir string
	log *slog.Logger
	// Corrupt is told of each file that could not be read (it is started empty): an alert.
	corrupt func(file string, err error)

	mu     sync.Mutex
	series map[string]*series
	marks  []Mark
	dirtyM bool
}

// Open reads the store in dir (made if missing). A file that cannot be read is reported
// to corrupt (may be nil), logged, and its series starts empty: history is never worth
// the box not starting.
func Open(dir string, log *slog.Logger, corrupt func(file string, err error)) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if corrupt == nil {
		corrupt = func(string, error) {}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	s := &Store{dir: dir, log: log, corrupt: corrupt, series: map[string]*series{}}
	files, err := filepath.Glob(filepath.Join(dir, "*.ring"))
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	for _, f := range files {
		name, rs, err := readRing(f)
		if err != nil {
			s.bad(f, err)
			continue
		}
		s.series[name] = &series{rings: rs}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "marks.json")); err == nil {
		if err := json.Unmarshal(b, &s.marks); err != nil {
			s.marks = nil
			s.bad(filepath.Join(dir, "marks.json"), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		s.bad(filepath.Join(dir, "marks.json"), err)
	}
	return s, nil
}

func (s *Store) bad(file string, err error) {
	s.log.Error("history file unreadable: that series starts empty", "file", file, "err", err)
	s.corrupt(file, err)
}

// Add records v for the series name at t. NaN and infinities are gaps.
func (s *Store) Add(name string, t time.Time, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.series[name]
	if se == nil {
		se = &series{}
		for _, r := range resolutions {
			se.rings = append(se.rings, newRing(r.Step, r.Keep))
		}
		s.series[name] = se
	}
	for _, r := range se.rings {
		r.add(t, v)
	}
	se.dirty = true
}

// Mark records an event to draw on the charts; the oldest go beyond maxMarks or the
// coarsest resolution's span.
func (s *Store) Mark(m Mark) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := m.T.Add(-resolutions[len(resolutions)-1].Keep)
	s.marks = slices.DeleteFunc(append(s.marks, m), func(x Mark) bool { return x.T.Before(cut) })
	if n := len(s.marks); n > maxMarks {
		s.marks = s.marks[n-maxMarks:]
	}
	s.dirtyM = true
}

// Names lists the series held, sorted.
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.series))
	for n := range s.series {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Query returns a series' points from..to at the finest resolution that covers from, and
// that resolution's step.
func (s *Store) Query(name string, from, to, now time.Time) ([]Point, time.Duration) {
	i := 0
	// A minute's slack: a page asking for "the last day" by its own clock gets the fine ring.
	for i < len(resolutions)-1 && from.Before(now.Add(-resolutions[i].Keep-time.Minute)) {
		i++
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.series[name]
	if se == nil {
		return nil, resolutions[i].Step
	}
	return se.rings[i].points(from, to), resolutions[i].Step
}

// Marks returns the marks from..to, oldest first.
func (s *Store) Marks(from, to time.Time) []Mark {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Mark
	for _, m := range s.marks {
		if !m.T.Before(from) && !m.T.After(to) {
			out = append(out, m)
		}
	}
	return out
}

// Flush writes what changed since the last flush, each file crash-safely, and removes the
// series no longer sampled for longer than the coarsest ring holds (a probe target taken out
// of the config), so the store stays bounded.
func (s *Store) Flush() error {
	s.mu.Lock()
	type job struct {
		path string
		data []byte
	}
	var jobs []job
	var gone []string
	coarsest := len(resolutions) - 1
	var newest int64
	for _, se := range s.series {
		newest = max(newest, se.rings[coarsest].head)
	}
	for name, se := range s.series {
		if r := se.rings[coarsest]; r.head <= newest-int64(len(r.v)) {
			delete(s.series, name)
			gone = append(gone, filepath.Join(s.dir, fileName(name)))
			continue
		}
		if !se.dirty {
			continue
		}
		b, err := encodeRing(name, se.rings)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		jobs = append(jobs, job{filepath.Join(s.dir, fileName(name)), b})
		se.dirty = false
	}
	if s.dirtyM {
		b, _ := json.Marshal(s.marks)
		jobs = append(jobs, job{filepath.Join(s.dir, "marks.json"), b})
		s.dirtyM = false
	}
	s.mu.Unlock()
	var errs []error
	for _, f := range gone {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, j := range jobs {
		if err := store.WriteFile(j.path, j.data, 0o600); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// fileName keeps a series' file name to plain characters (its real name is inside).
func fileName(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, name) + ".ring"
}

// encodeRing writes a series: magic, name, then each ring's step, size, head and values,
// gzipped (gaps and steady figures shrink a lot, and gzip's CRC finds a damaged file).
func encodeRing(name string, rs []*ring) ([]byte, error) {
	var raw bytes.Buffer
	raw.WriteString(magic)
	w := func(v any) { _ = binary.Write(&raw, binary.LittleEndian, v) }
	w(uint16(len(name)))
	raw.WriteString(name)
	w(uint8(len(rs)))
	for _, r := range rs {
		w(uint32(r.step / time.Second))
		w(uint32(len(r.v)))
		w(r.head)
		w(coarse(r.v))
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, fmt.Errorf("history: encode %s: %w", name, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("history: encode %s: %w", name, err)
	}
	return out.Bytes(), nil
}

// coarse rounds each value to 10 bits of mantissa (0.1 %, finer than a chart shows): the
// noise of the low bits is what gzip cannot shrink, and each flush wears the SD card.
func coarse(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		if math.IsNaN(float64(x)) {
			out[i] = x
			continue
		}
		out[i] = math.Float32frombits((math.Float32bits(x) + 1<<12) &^ (1<<13 - 1))
	}
	return out
}

// readRing reads a file encodeRing wrote; its rings must match today's resolutions.
func readRing(path string) (string, []*ring, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", nil, err
	}
	// Bounded: a series is well under a megabyte.
	raw, err := io.ReadAll(io.LimitReader(zr, 1<<20))
	if err != nil {
		return "", nil, err
	}
	rd := bytes.NewReader(raw)
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(rd, m); err != nil || string(m) != magic {
		return "", nil, errors.New("not a history file")
	}
	r := func(v any) error { return binary.Read(rd, binary.LittleEndian, v) }
	var nl uint16
	if err := r(&nl); err != nil {
		return "", nil, err
	}
	nb := make([]byte, nl)
	if _, err := io.ReadFull(rd, nb); err != nil {
		return "", nil, err
	}
	var nr uint8
	if err := r(&nr); err != nil {
		return "", nil, err
	}
	if int(nr) != len(resolutions) {
		return "", nil, fmt.Errorf("%d resolutions, want %d", nr, len(resolutions))
	}
	var rs []*ring
	for i := range int(nr) {
		var step, size uint32
		if err := errors.Join(r(&step), r(&size)); err != nil {
			return "", nil, err
		}
		want := resolutions[i]
		if time.Duration(step)*time.Second != want.Step || int(size) != int(want.Keep/want.Step) {
			return "", nil, fmt.Errorf("ring %d is %d x %ds, want %s for %s", i, size, step, want.Step, want.Keep)
		}
		rg := newRing(want.Step, want.Keep)
		if err := errors.Join(r(&rg.head), r(rg.v)); err != nil {
			return "", nil, err
		}
		for j, v := range rg.v {
			if !math.IsNaN(float64(v)) {
				rg.n[j] = 1
			}
		}
		rs = append(rs, rg)
	}
	if rd.Len() != 0 {
		return "", nil, errors.New("trailing bytes")
	}
	return string(nb), rs, nil
}
