package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func withTimezone(line string) []byte {
	return []byte(strings.Replace(string(Example()), `# timezone = "Europe/Berlin"`, line, 1))
}

// The site's zone loads by its IANA name and writes times labelled with it; without one,
// times are UTC.
func TestTimezone(t *testing.T) {
	c, err := Parse("site.toml", withTimezone(`timezone = "America/New_York"`))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 15, 17, 0, 0, 0, time.UTC)
	if got := c.Stamp(at); got != "2026-01-15 12:00:00 EST" {
		t.Errorf("Stamp = %q", got)
	}
	c, err = Parse("site.toml", Example())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Stamp(at); got != "2026-01-15 17:00:00 UTC" {
		t.Errorf("Stamp without a zone = %q", got)
	}
}

// A zone that does not exist, or a name that is not a zone, is refused where it is written.
func TestTimezoneRefused(t *testing.T) {
	data := withTimezone(`timezone = "Europe/Atlantis"`)
	line := 1 + strings.Count(string(data[:strings.Index(string(data), "timezone = ")]), "\n")
	for _, bad := range []string{`"Europe/Atlantis"`, `"Local"`, `"../../etc/passwd"`} {
		_, err := Parse("site.toml", withTimezone("timezone = "+bad))
		if err == nil {
			t.Fatalf("%s accepted", bad)
		}
		want := fmt.Sprintf("site.toml:%d:13: timezone: ", line)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q lacks %q", bad, err, want)
		}
	}
}
