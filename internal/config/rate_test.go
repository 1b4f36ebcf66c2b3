package config

import (
	"strings"
	"testing"
	"time"
)

func TestRate(t *testing.T) {
	for in, want := range map[string]Rate{
		"20Mbit": {Bits: 20e6}, "800kbit": {Bits: 800e3}, "1.5Gbit": {Bits: 1.5e9}, "64000": {Bits: 64000},
		"auto": {Auto: true}, "AUTO": {Auto: true}, " 10 mbit ": {Bits: 10e6}, "2Mbit/s": {Bits: 2e6},
	} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err != nil || r != want {
			t.Errorf("%q = %+v, %v; want %+v", in, r, err, want)
		}
	}
	for _, in := range []string{"", "fast", "20MB", "-1Mbit", "0", "1bit", "200Gbit", "NaNMbit", "1e9Mbit"} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %+v", in, r)
		}
	}
	if s := (Rate{Bits: 20e6}).String(); s != "20Mbit" {
		t.Errorf("String = %q", s)
	}
}

func TestShapingSettings(t *testing.T) {
	src := strings.Replace(base, "[uplink.primary]\n", "[uplink.primary]\nupload = \"auto\"\nupload_min = \"2Mbit\"\nupload_max = \"20Mbit\"\n", 1) +
		"[voice]\nspeedtest_url = \"http://speed.example.net/\"\n"
	c, err := Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	u := c.Uplink.Primary
	if !u.Upload.Auto || u.UploadMin.Bits != 2e6 || u.UploadMax.Bits != 20e6 || c.Voice.SpeedtestDuration != 10*time.Second {
		t.Errorf("parsed %+v %+v", u, c.Voice)
	}
	for _, tc := range []struct{ uplink, voice, want string }{
		{`upload = "20MB"`, "", `t.toml:6:11: uplink.primary.upload: "20MB" is not a line rate`},
		{`upload = "auto"`, "", `t.toml:6:11: uplink.primary.upload: upload = "auto" needs upload_min and upload_max`},
		{"upload = \"auto\"\nupload_min = \"30Mbit\"\nupload_max = \"20Mbit\"", "", `t.toml:7:15: uplink.primary.upload_min: must not be above upload_max (30Mbit > 20Mbit)`},
		{"upload = \"20Mbit\"\nupload_min = \"2Mbit\"", "", `t.toml:7:15: uplink.primary.upload_min: upload_min and upload_max are the bounds of upload = "auto"`},
		{`download = "80Mbit"`, "", `t.toml:6:13: uplink.primary.download: unknown setting "download"`},
		{"", `speedtest_url = "ftp://x"`, `voice.speedtest_url: must be an http:// or https:// URL`},
		{"", `speedtest_duration = "2h"`, `voice.speedtest_duration: must be 1s to 1m, not 2h0m0s`},
	} {
		src := strings.Replace(base, "[uplink.primary]\n", "[uplink.primary]\n"+tc.uplink+"\n", 1) + "[voice]\n" + tc.voice + "\n"
		_, err := Parse("t.toml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %q: got %v, want %q", tc.uplink, tc.voice, err, tc.want)
		}
	}
}
