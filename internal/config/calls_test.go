package config

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCallQuality: [voice.calls] defaults (on, 200 calls, MOS 3.5, 2 s) and its errors at
// their file, line and column.
func TestCallQuality(t *testing.T) {
	c, err := Parse("example.toml", Example())
	if err != nil {
		t.Fatal(err)
	}
	if q := c.Voice.Calls; !q.Enabled || q.MaxCalls != 200 || q.MOSAlert != 3.5 || q.OneWayAfter != 2*time.Second {
		t.Errorf("defaults: %+v", q)
	}
	for _, x := range []struct{ set, want string }{
		{"max_calls = 0", "voice.calls.max_calls: must be 1 to 10000, not 0"},
		{"mos_alert = 4.8", "voice.calls.mos_alert: must be 0 (off) or an estimated MOS from 1 to 4.5, not 4.8"},
		{`one_way_after = "100ms"`, "voice.calls.one_way_after: must be 500ms to 1m, not 100ms"},
	} {
		text := string(Example()) + "\n[voice.calls]\n" + x.set + "\n"
		line := strings.Count(text, "\n")
		_, err := Parse("t.toml", []byte(text))
		if err == nil || !strings.Contains(err.Error(), x.want) || !strings.Contains(err.Error(), "t.toml:"+strconv.Itoa(line)+":") {
			t.Errorf("%s: %v, want line %d: %s", x.set, err, line, x.want)
		}
	}
	c, err = Parse("t.toml", append(Example(), "\n[voice.calls]\nenabled = false\nmos_alert = 0\n"...))
	if err != nil || c.Voice.Calls.Enabled || c.Voice.Calls.MOSAlert != 0 {
		t.Errorf("off: %v %+v", err, c.Voice.Calls)
	}
}
