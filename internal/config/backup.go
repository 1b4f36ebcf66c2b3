package config

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/ssh"
)

// Backup is [backup]: the PBX's backups received on the box (copy 2, on the box's medium)
// and sent encrypted off-site (copy 3), each copy verified. No dir: backups are off.
type Backup struct {
	// Dir is the backup medium: a USB disk's mount point or a folder on the state partition.
	Dir string `toml:"dir"`
	// At is the daily time ("02:30", the box's local time) the off-site uploads start.
	At string `toml:"at"`
	// MaxAge: a destination whose newest verified copy is older than this is stale (an
	// alert, and the checklist fails). Default 26h: a daily backup plus some slack.
	MaxAge time.Duration `toml:"max_age"`
	// RateKbit caps the upload rate in kbit/s so a backup never spoils calls (0: no cap).
	RateKbit int `toml:"rate_kbit"`
	// OverBackupUplink lets uploads use the backup (LTE) uplink. Off by default: uploads
	// go through the primary uplink only and wait while the backup uplink carries the office.
	OverBackupUplink bool `toml:"over_backup_uplink"`
	// Port is the SFTP endpoint for PBXes that push their backups, on the LAN address only.
	Port Port `toml:"port"`
	// KeepDaily, KeepWeekly and KeepMonthly are the generations kept per destination.
	KeepDaily   int `toml:"keep_daily"`
	KeepWeekly  int `toml:"keep_weekly"`
	KeepMonthly int `toml:"keep_monthly"`
	// RetryMin and RetryMax bound the backoff between failed uploads.
	RetryMin time.Duration `toml:"retry_min"`
	RetryMax time.Duration `toml:"retry_max"`
	// LoginMaxFailures wrong passwords from one address lock it out of the SFTP endpoint
	// for LoginLockout, the right password included.
	LoginMaxFailures int           `toml:"login_max_failures"`
	LoginLockout     time.Duration `toml:"login_lockout"`
	// PBX are the systems whose backups are received; Destinations where the copies go.
	PBX          []BackupPBX  `toml:"pbx"`
	Destinations []BackupDest `toml:"destination"`
	// DR is what the disaster-recovery sheet needs that the rest of the config does not say.
	DR DRSheet `toml:"dr"`
}

// BackupPBX is one [[backup.pbx]]: a PBX that pushes its backups to the box, or one the box
// pulls them from.
type BackupPBX struct {
	Name string `toml:"name"`
	Mode string `toml:"mode"` // push or pull
	// push: the SFTP account is Name; AuthorizedKeys (OpenSSH lines) and/or a password read
	// from PasswordFile log it in.
	AuthorizedKeys []string `toml:"authorized_keys"`
	PasswordFile   string   `toml:"password_file"`
	// pull: the PBX's SSH server, user, the box's private key, the PBX's host key
	// (an OpenSSH public key line) and the folder its backups are in.
	Address   string `toml:"address"`
	User      string `toml:"user"`
	KeyFile   string `toml:"key_file"`
	HostKey   string `toml:"host_key"`
	RemoteDir string `toml:"remote_dir"`
	// Quota and QuotaFiles bound what the PBX may have in its folder on the medium (0 or
	// unset: DefaultQuota, DefaultQuotaFiles): a push over it fails, a pull stops, and an
	// alert says so.
	Quota      Bytes `toml:"quota"`
	QuotaFiles int   `toml:"quota_files"`
}

// The default per-PBX quota: the generations retention keeps (7 daily, 4 weekly, 6 monthly
// and the last day's) of a 3CX backup with some recordings (~1 GB) or of a FreePBX one,
// in a few files each.
const (
	DefaultQuota      = Bytes(16 << 30)
	DefaultQuotaFiles = 500
)

// BackupDest is one [[backup.destination]]: an off-site store and the age recipient its
// copies are encrypted to (the private key is never on the box).
type BackupDest struct {
	Name      string `toml:"name"`
	Kind      string `toml:"kind"`      // s3 or sftp
	Recipient string `toml:"recipient"` // age1...
	// s3: Endpoint is host:port; SecretKeyFile holds the secret key.
	Endpoint      string `toml:"endpoint"`
	Bucket        string `toml:"bucket"`
	Region        string `toml:"region"`
	AccessKey     string `toml:"access_key"`
	SecretKeyFile string `toml:"secret_key_file"`
	// InsecureHTTP talks plain HTTP to the S3 server (the objects are encrypted anyway, but
	// the credentials are not).
	InsecureHTTP bool `toml:"insecure_http"`
	// sftp: Address host:port, User, KeyFile (the box's key), HostKey, Dir.
	Address string `toml:"address"`
	User    string `toml:"user"`
	KeyFile string `toml:"key_file"`
	HostKey string `toml:"host_key"`
	// Prefix (s3) or Dir (sftp) is where the objects go.
	Prefix string `toml:"prefix"`
	Dir    string `toml:"dir"`
	// Restore says in plain words where the identity (private key) for this destination is
	// kept, for the disaster-recovery sheet ("the safe in the office, envelope B").
	Restore string `toml:"restore"`
}

// DRSheet is [backup.dr]: contacts for the disaster-recovery sheet.
type DRSheet struct {
	// ISPSupport is each uplink's ISP support number, by uplink name ("FTTC", "LTE").
	ISPSupport map[string]string `toml:"isp_support"`
	// TrunkSupport is each SIP trunk provider's support number, by [sip_peers] name.
	TrunkSupport map[string]string `toml:"trunk_support"`
	// Contacts are other people to call (the PBX's reseller, the IT firm).
	Contacts []string `toml:"contacts"`
}

// Enabled says whether backups are configured.
func (s *Backup) Enabled() bool { return s.Dir != "" }

var atRE = regexp.MustCompile(`^([01]\d|2[0-3]):([0-5]\d)$`)

// AtClock is At as hour and minute.
func (s *Backup) AtClock() (h, m int) {
	if mm := atRE.FindStringSubmatch(s.At); mm != nil {
		h, _ = strconv.Atoi(mm[1])
		m, _ = strconv.Atoi(mm[2])
	}
	return h, m
}

func (s *Backup) setDefaults(md *toml.MetaData) {
	if s.At == "" {
		s.At = "02:30"
	}
	if s.MaxAge == 0 {
		s.MaxAge = 26 * time.Hour
	}
	if !md.IsDefined("backup", "port") {
		s.Port = 2222
	}
	if !md.IsDefined("backup", "keep_daily") {
		s.KeepDaily = 7
	}
	if !md.IsDefined("backup", "keep_weekly") {
		s.KeepWeekly = 4
	}
	if !md.IsDefined("backup", "keep_monthly") {
		s.KeepMonthly = 6
	}
	if s.RetryMin == 0 {
		s.RetryMin = time.Minute
	}
	if s.RetryMax == 0 {
		s.RetryMax = time.Hour
	}
	if s.LoginMaxFailures == 0 {
		s.LoginMaxFailures = 5
	}
	if s.LoginLockout == 0 {
		s.LoginLockout = 15 * time.Minute
	}
	for i := range s.PBX {
		if s.PBX[i].User == "" {
			s.PBX[i].User = "root"
		}
		if s.PBX[i].Quota == 0 {
			s.PBX[i].Quota = DefaultQuota
		}
		if s.PBX[i].QuotaFiles == 0 {
			s.PBX[i].QuotaFiles = DefaultQuotaFiles
		}
	}
	for i := range s.Destinations {
		if s.Destinations[i].Region == "" {
			s.Destinations[i].Region = "us-east-1"
		}
	}
}

func (s *Backup) check(c *Config, v *validator) {
	if !s.Enabled() {
		if len(s.PBX) > 0 || len(s.Destinations) > 0 {
			v.errf(key("backup", "dir"), "PBXes or destinations are set but no dir: say where the box keeps its copy (a USB disk or a folder on the state partition)")
		}
		return
	}
	if !strings.HasPrefix(s.Dir, "/") {
		v.errf(key("backup", "dir"), "%q is not an absolute path", s.Dir)
	}
	if !atRE.MatchString(s.At) {
		v.errf(key("backup", "at"), "%q is not a time of day like \"02:30\"", s.At)
	}
	if s.MaxAge < time.Second {
		v.errf(key("backup", "max_age"), "must be at least 1s (it is %s)", s.MaxAge)
	}
	if s.RateKbit < 0 {
		v.errf(key("backup", "rate_kbit"), "must be 0 (no cap) or more")
	}
	if s.KeepDaily < 1 || s.KeepWeekly < 0 || s.KeepMonthly < 0 {
		v.errf(key("backup", "keep_daily"), "keep at least one daily copy (weekly and monthly may be 0)")
	}
	if s.RetryMin < time.Second || s.RetryMax < s.RetryMin {
		v.errf(key("backup", "retry_min"), "retry_min must be at least 1s and retry_max at least retry_min")
	}
	if s.LoginMaxFailures < 1 {
		v.errf(key("backup", "login_max_failures"), "must be at least 1 (it is %d)", s.LoginMaxFailures)
	}
	if s.LoginLockout < time.Second {
		v.errf(key("backup", "login_lockout"), "must be at least 1s (it is %s)", s.LoginLockout)
	}
	if s.Port != 0 && (s.Port == c.Admin.SSHPort || s.Port == c.WebPort() || s.Port == c.Web.HTTPSPort) {
		v.errf(key("backup", "port"), "%d is already the box's SSH or status page port: give the backup endpoint a port of its own", s.Port)
	}
	if s.OverBackupUplink {
		c.Warnings = append(c.Warnings, "backup.over_backup_uplink: backups may be sent over the backup (LTE) uplink, using its data allowance")
	}
	names := map[string]bool{}
	for i, p := range s.PBX {
		s.checkPBX(i, p, names, v)
	}
	names = map[string]bool{}
	for _, d := range s.Destinations {
		checkDest(d, names, v)
	}
	if len(s.Destinations) == 0 {
		c.Warnings = append(c.Warnings, "backup: no [[backup.destination]]: no copy leaves the office (the 3-2-1 rule wants one off-site)")
	}
}

var backupNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

func (s *Backup) checkPBX(i int, p BackupPBX, names map[string]bool, v *validator) {
	k := key("backup", "pbx")
	if p.Quota < 1_000_000 {
		v.errfArray([]string{"backup", "pbx"}, i, "quota", "PBX %q: quota must be at least 1MB (it is %d bytes)", p.Name, p.Quota)
	}
	if p.QuotaFiles < 1 {
		v.errfArray([]string{"backup", "pbx"}, i, "quota_files", "PBX %q: quota_files must be at least 1 (it is %d)", p.Name, p.QuotaFiles)
	}
	if !backupNameRE.MatchString(p.Name) {
		v.errf(k, "PBX name %q must be 1-32 of a-z, 0-9, _ and - (it names its folder and its SFTP account)", p.Name)
	} else if names[p.Name] {
		v.errf(k, "PBX %q is listed twice", p.Name)
	}
	names[p.Name] = true
	switch p.Mode {
	case "push":
		if len(p.AuthorizedKeys) == 0 && p.PasswordFile == "" {
			v.errf(k, "PBX %q pushes its backups: give authorized_keys or password_file for its SFTP account", p.Name)
		}
		for _, line := range p.AuthorizedKeys {
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
				v.errf(k, "PBX %q: authorized key %q is not an OpenSSH public key line: %v", p.Name, short(line), err)
			}
		}
		if s.Port == 0 {
			v.errf(key("backup", "port"), "PBX %q pushes its backups, but the SFTP endpoint is off (port = 0)", p.Name)
		}
	case "pull":
		if _, _, err := net.SplitHostPort(p.Address); err != nil {
			v.errf(k, "PBX %q: address %q is not host:port (like \"192.168.1.10:22\")", p.Name, p.Address)
		}
		if p.KeyFile == "" || p.RemoteDir == "" {
			v.errf(k, "PBX %q: pulling needs key_file (the box's key) and remote_dir (the PBX's backup folder)", p.Name)
		} else if !path.IsAbs(p.RemoteDir) {
			// A relative folder is joined to whatever the PBX's server calls home: it must
			// not decide where the box reads from.
			v.errfArray([]string{"backup", "pbx"}, i, "remote_dir", "PBX %q: remote_dir %q is not an absolute path (like \"/var/spool/asterisk/backup\")", p.Name, p.RemoteDir)
		}
		checkHostKey(k, "PBX "+strconv.Quote(p.Name), p.HostKey, v)
	default:
		v.errf(k, "PBX %q: mode %q is not push or pull", p.Name, p.Mode)
	}
}

func checkDest(d BackupDest, names map[string]bool, v *validator) {
	k := key("backup", "destination")
	what := "destination " + strconv.Quote(d.Name)
	if !backupNameRE.MatchString(d.Name) {
		v.errf(k, "destination name %q must be 1-32 of a-z, 0-9, _ and -", d.Name)
	} else if names[d.Name] {
		v.errf(k, "%s is listed twice", what)
	}
	names[d.Name] = true
	if _, err := age.ParseX25519Recipient(d.Recipient); err != nil {
		v.errf(k, "%s: recipient %q is not an age public key (age1...): make a key pair with age-keygen away from the box and put only the public key here", what, short(d.Recipient))
	}
	switch d.Kind {
	case "s3":
		if _, _, err := net.SplitHostPort(d.Endpoint); err != nil {
			v.errf(k, "%s: endpoint %q is not host:port", what, d.Endpoint)
		}
		if d.Bucket == "" || d.AccessKey == "" || d.SecretKeyFile == "" {
			v.errf(k, "%s: s3 needs bucket, access_key and secret_key_file", what)
		}
	case "sftp":
		if _, _, err := net.SplitHostPort(d.Address); err != nil {
			v.errf(k, "%s: address %q is not host:port", what, d.Address)
		}
		if d.User == "" || d.KeyFile == "" {
			v.errf(k, "%s: sftp needs user and key_file", what)
		}
		checkHostKey(k, what, d.HostKey, v)
	default:
		v.errf(k, "%s: kind %q is not s3 or sftp", what, d.Kind)
	}
}

func checkHostKey(k, what, line string, v *validator) {
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
		v.errf(k, "%s: host_key must be the server's OpenSSH public key line (ssh-keyscan shows it), so nobody can pose as it: %v", what, err)
	}
}

// short cuts a long value for an error message.
func short(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s...", s[:40])
	}
	return s
}

// errfArray records a problem with field of the n-th (from 0) [[table]] at the line it is
// written on: BurntSushi/toml keeps one position per key path, the last table's. A field
// not written falls back to the usual position.
func (v *validator) errfArray(table []string, n int, field, format string, args ...any) {
	header := "[[" + strings.Join(table, ".") + "]]"
	seen := -1
	for i, line := range strings.Split(v.data, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			if seen == n {
				break // the next table: the field is not written in this one
			}
			if strings.ReplaceAll(t, " ", "") == header || strings.HasPrefix(strings.ReplaceAll(t, " ", ""), header+"#") {
				seen++
			}
			continue
		}
		if seen != n {
			continue
		}
		if rest, ok := strings.CutPrefix(t, field); ok && strings.HasPrefix(strings.TrimSpace(rest), "=") {
			path := key(append(table, field)...)
			v.errs = append(v.errs, &Error{File: v.file, Line: i + 1, Col: strings.Index(line, field) + 1, Field: path, Msg: fmt.Sprintf(format, args...)})
			sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
			return
		}
	}
	v.errf(key(append(table, field)...), format, args...)
}
