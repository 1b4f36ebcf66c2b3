package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Rate is a line rate in bits per second: "20Mbit", "800kbit", "1.5Gbit" (powers of 1000,
// as ISPs sell lines; a bare number is bit/s), or "auto" where allowed (upload: the shaper
// follows the line between upload_min and upload_max).
type Rate struct {
	Bits uint64 // bit/s; 0 with Auto false: not set
	Auto bool
}

var rateUnits = map[string]float64{"": 1, "BIT": 1, "KBIT": 1e3, "MBIT": 1e6, "GBIT": 1e9}

// MaxRate is the highest rate a shaper takes (100 Gbit/s): beyond any uplink of an office.
const MaxRate = 100e9

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(t []byte) error {
	s := strings.TrimSpace(string(t))
	if strings.EqualFold(s, "auto") {
		*r = Rate{Auto: true}
		return nil
	}
	i := strings.IndexFunc(s, func(c rune) bool { return (c < '0' || c > '9') && c != '.' })
	if i < 0 {
		i = len(s)
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	u := strings.ToUpper(strings.TrimSpace(s[i:]))
	unit, ok := rateUnits[strings.TrimSuffix(u, "/S")]
	if err != nil || !ok || n <= 0 || n*unit < 8000 || n*unit > MaxRate || math.IsNaN(n) {
		return fmt.Errorf("%q is not a line rate: write it like \"20Mbit\", \"800kbit\" or \"auto\" (from 8kbit to 100Gbit)", t)
	}
	*r = Rate{Bits: uint64(n * unit)}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// IsZero says the rate was not set.
func (r Rate) IsZero() bool { return r.Bits == 0 && !r.Auto }

// String is r for people and configs: "20Mbit", "800kbit", "auto".
func (r Rate) String() string {
	switch {
	case r.Auto:
		return "auto"
	case r.Bits == 0:
		return ""
	}
	for _, u := range []string{"Gbit", "Mbit", "kbit"} {
		if f := rateUnits[strings.ToUpper(u)]; float64(r.Bits) >= f {
			return strconv.FormatFloat(float64(r.Bits)/f, 'f', -1, 64) + u
		}
	}
	return strconv.FormatUint(r.Bits, 10) + "bit"
}
