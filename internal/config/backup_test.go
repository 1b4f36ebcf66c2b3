package config

import (
	"strings"
	"testing"
	"time"
)

func TestBackupDefaultsAndErrors(t *testing.T) {
	c, err := Parse("example.toml", Example())
	if err != nil {
		t.Fatal(err)
	}
	b := c.Backup
	if !b.Enabled() || b.MaxAge != 26*time.Hour || b.KeepDaily != 7 || b.KeepWeekly != 4 || b.KeepMonthly != 6 || b.OverBackupUplink ||
		len(b.Destinations) != 2 || b.Destinations[0].Region != "us-east-1" || b.RetryMin != time.Minute {
		t.Errorf("defaults: %+v", b)
	}
	if h, m := b.AtClock(); h != 2 || m != 30 {
		t.Errorf("at = %d:%d", h, m)
	}
	// A private key where the public one goes, a wrong time, a pull without a host key: each
	// one error, with its line.
	bad := strings.Replace(string(Example()), `recipient = "age15xem8vdyzjl4d3a6hv0lqgnchnqg488fjum5vp8fnumfeh8g8f6smhmdnh"`,
		`recipient = "AGE-SECRET-KEY-1QQQQ"`, 1)
	bad = strings.Replace(bad, `at = "02:30"`, `at = "25:00"`, 1)
	bad = strings.Replace(bad, "port = 2222 ", "port = 443 ", 1)
	bad += "\n[[backup.pbx]]\nname = \"freepbx\"\nmode = \"pull\"\naddress = \"192.168.1.10:22\"\nkey_file = \"/k\"\nremote_dir = \"/b\"\n"
	_, err = Parse("bad.toml", []byte(bad))
	if err == nil {
		t.Fatal("bad [backup] accepted")
	}
	for _, want := range []string{"bad.toml:", "backup.at", "25:00", "not an age public key", "host_key", "backup.port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// Off by default: no dir, no backups, no errors.
	i := strings.Index(string(Example()), "\n[backup]\n")
	c, err = Parse("off.toml", Example()[:i])
	if err != nil || c.Backup.Enabled() {
		t.Errorf("without [backup]: %v %v", c.Backup.Enabled(), err)
	}
}
