package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Bytes is an amount of data: "20GB", "500 MB", "1.5GiB" (kB, MB, GB, TB are powers of
// 1000, as mobile operators count; KiB, MiB, GiB, TiB powers of 1024; a bare number is bytes).
type Bytes int64

var byteUnits = map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *Bytes) UnmarshalText(t []byte) error {
	s := strings.TrimSpace(string(t))
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(s)
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	unit, ok := byteUnits[strings.ToUpper(strings.TrimSpace(s[i:]))]
	if err != nil || !ok || n < 0 || n*unit > math.MaxInt64/2 {
		return fmt.Errorf("%q is not an amount of data: write it like \"20GB\", \"500MB\" or \"1.5GiB\"", t)
	}
	*b = Bytes(n * unit)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (b Bytes) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(b), 10)), nil }

// String is b for people: "20 GB", "1.5 MB".
func (b Bytes) String() string {
	for _, u := range []string{"TB", "GB", "MB", "kB"} {
		if f := byteUnits[strings.ToUpper(u)]; float64(b) >= f {
			return strconv.FormatFloat(math.Round(float64(b)/f*10)/10, 'f', -1, 64) + " " + u
		}
	}
	return strconv.FormatInt(int64(b), 10) + " B"
}

// budgetDefaults renews an uplink's data allowance on the 1st unless billing_day says.
func (u *Uplink) budgetDefaults(md *toml.MetaData) {
	if !md.IsDefined("uplink", u.Role, "billing_day") {
		u.BillingDay = 1
	}
}

// checkBudgets checks each uplink's data_budget and billing_day.
func checkBudgets(c *Config, v *validator) {
	for _, u := range c.Uplink.All() {
		if u.BillingDay < 1 || u.BillingDay > 31 {
			v.errf(key("uplink", u.Role, "billing_day"), "must be a day of the month from 1 to 31, when the data allowance renews (it is %d); 29-31 mean the month's last day in shorter months", u.BillingDay)
		}
		if u.DataBudget < 0 || (u.DataBudget > 0 && u.DataBudget < 1_000_000) {
			v.errf(key("uplink", u.Role, "data_budget"), "must be at least 1MB (it is %d bytes); leave it out for a line without a data cap", u.DataBudget)
		}
	}
}
