// Package benchstat is the benchmark programs' summary of their samples: percentiles and their output lines.
package benchstat

import (
	"fmt"
	"slices"
)

// Pct is the p-th percentile of v by nearest rank (the smallest sample with at least p% of
// the samples at or below it; p = 0 is the smallest), 0 for no samples. v is left as it is.
func Pct(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	k := (p*len(s) + 99) / 100
	return s[min(max(k-1, 0), len(s)-1)]
}

// Line prints `name p50=… p95=…` with the given decimals.
func Line(name string, v []float64, decimals int) {
	fmt.Printf("%s p50=%.*f p95=%.*f\n", name, decimals, Pct(v, 50), decimals, Pct(v, 95))
}
