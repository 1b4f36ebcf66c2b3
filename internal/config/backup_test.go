package config

import (
	"fmt"
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

// TestBackupRemoteDirAbsolute: a pull from a relative folder is refused at the line of the
// PBX it belongs to (the second of two), and quotas default to what a real backup fits.
func TestBackupRemoteDirAbsolute(t *testing.T) {
	pull := func(name, dir string) string {
		return "\n[[backup.pbx]]\nname = \"" + name + "\"\nmode = \"pull\"\naddress = \"192.168.1.10:22\"\nkey_file = \"/k\"\n" +
			"host_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDW+VCbGOaiEdhr6L+fQLHqd47AQ1TmZwSQeFunI/lOe\"\nremote_dir = \"" + dir + "\"\n"
	}
	good := string(Example()) + pull("freepbx", "/var/spool/asterisk/backup")
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Backup.PBX {
		if p.Quota != DefaultQuota || p.QuotaFiles != DefaultQuotaFiles {
			t.Errorf("PBX %s: quota %d bytes, %d files; want the defaults", p.Name, p.Quota, p.QuotaFiles)
		}
	}
	if c.Backup.LoginMaxFailures != 5 || c.Backup.LoginLockout != 15*time.Minute {
		t.Errorf("login limits %d %s", c.Backup.LoginMaxFailures, c.Backup.LoginLockout)
	}
	bad := good + pull("asterisk", "backups")
	line := strings.Count(bad, "\n") // remote_dir is the last line
	_, err = Parse("bad.toml", []byte(bad))
	want := fmt.Sprintf("bad.toml:%d:1: backup.pbx.remote_dir: PBX \"asterisk\": remote_dir \"backups\" is not an absolute path", line)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("relative remote_dir: got\n%v\nwant %s", err, want)
	}
	bad = good + "quota = \"100kB\"\nquota_files = -1\n"
	_, err = Parse("bad.toml", []byte(bad))
	for _, want := range []string{fmt.Sprintf("bad.toml:%d:1: backup.pbx.quota: PBX \"freepbx\": quota must be at least 1MB", strings.Count(bad, "\n")-1),
		fmt.Sprintf("bad.toml:%d:1: backup.pbx.quota_files:", strings.Count(bad, "\n"))} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("small quota: got\n%v\nwant %s", err, want)
		}
	}
}
