package backup

import (
	"fmt"
	"slices"
	"time"
)

// Policy is how many daily, weekly and monthly generations to keep.
type Policy struct{ Daily, Weekly, Monthly int }

// keep picks the entries to keep from one series (any order), by the time the box received
// each (Made; never a time the PBX supplied, which could back-date junk into every past
// generation's bucket): the newest of each of the last Daily days, Weekly ISO weeks and
// Monthly months that have a copy, and every copy of the last 24 hours. The newest copy is always kept, so nothing is pruned unless a newer
// verified copy exists.
func (p Policy) keep(es []Entry) map[int]bool {
	kept := map[int]bool{}
	type bucket func(t time.Time) string
	buckets := []struct {
		n int
		f bucket
	}{
		{p.Daily, func(t time.Time) string { return t.UTC().Format("2006-01-02") }},
		{p.Weekly, func(t time.Time) string { y, w := t.UTC().ISOWeek(); return fmt.Sprintf("%04dw%02d", y, w) }},
		{p.Monthly, func(t time.Time) string { return t.UTC().Format("2006-01") }},
	}
	for _, b := range buckets {
		newest := map[string]int{} // bucket -> index of its newest entry
		var order []string
		for i, e := range es {
			k := b.f(e.Made)
			j, ok := newest[k]
			if !ok {
				order = append(order, k)
			}
			if !ok || e.Made.After(es[j].Made) {
				newest[k] = i
			}
		}
		// The n newest buckets.
		slices.Sort(order)
		slices.Reverse(order)
		for i, k := range order {
			if i >= b.n {
				break
			}
			kept[newest[k]] = true
		}
	}
	newestAll := -1
	for i, e := range es {
		if newestAll < 0 || e.Made.After(es[newestAll].Made) {
			newestAll = i
		}
	}
	// Everything from the last day is kept: a backup made by hand at noon does not push out
	// the night's one before either has aged.
	if newestAll >= 0 {
		for i, e := range es {
			if es[newestAll].Made.Sub(e.Made) < 24*time.Hour {
				kept[i] = true
			}
		}
	}
	return kept
}

// prunable are the present entries of m that the policy does not keep, per series.
func (p Policy) prunable(m *Manifest) []int {
	series := map[string][]int{}
	for i, e := range m.Entries {
		if e.Pruned.IsZero() {
			series[e.Series] = append(series[e.Series], i)
		}
	}
	var out []int
	for _, idx := range series {
		es := make([]Entry, len(idx))
		for j, i := range idx {
			es[j] = m.Entries[i]
		}
		kept := p.keep(es)
		for j, i := range idx {
			if !kept[j] {
				out = append(out, i)
			}
		}
	}
	return out
}
