package benchstat

import "testing"

func TestPctNearestRank(t *testing.T) {
	v := []float64{35, 15, 50, 20, 40}
	for _, c := range []struct {
		p    int
		want float64
	}{{0, 15}, {5, 15}, {30, 20}, {40, 20}, {50, 35}, {95, 50}, {100, 50}} {
		if got := Pct(v, c.p); got != c.want {
			t.Errorf("Pct(%v, %d) = %g, want %g", v, c.p, got, c.want)
		}
	}
	if v[0] != 35 || v[4] != 40 {
		t.Errorf("Pct changed its input: %v", v)
	}
	if got := Pct(nil, 50); got != 0 {
		t.Errorf("Pct(nil, 50) = %g, want 0", got)
	}
}
