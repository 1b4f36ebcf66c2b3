// Package backup keeps the PBX's backups by the 3-2-1 rule: received on the box's medium, sent age-encrypted off-site, every copy read back and verified.
package backup

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/backup/offsite"
	"github.com/officeedge/appliance/internal/backup/receive"
	"github.com/officeedge/appliance/internal/bind"
	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/events"
	"github.com/officeedge/appliance/internal/version"
	"github.com/officeedge/appliance/wan"
)

// Options connect the backups to the rest of the box.
type Options struct {
	Config   func() *config.Config
	StateDir string // manifests and the endpoint's host key
	Bus      *events.Bus
	Alerts   *alerts.Store
	// WAN is the failover part's status (false: wan is off): uploads wait while the backup
	// uplink carries the office, unless backup.over_backup_uplink.
	WAN func() (wan.Status, bool)
	// BoxFiles are the box's own configuration and state files, backed up with the PBX's.
	BoxFiles func() []string
	Log      *slog.Logger
	Now      func() time.Time
}

// Service runs the backups: the push endpoint, the schedule, uploads with retries, and
// the staleness alerts.
type Service struct {
	o       Options
	trigger chan struct{}

	mu       sync.Mutex
	nextRun  time.Time
	busy     string            // what is being done now
	waiting  string            // why uploads wait, if they do
	pulled   map[string]string // PBX -> last pull result
	endpoint string            // the push endpoint and its host key, when it listens
	stale    map[string]bool
	full     map[string]bool // PBXes over their quota, alerted
}

// New makes the service; Run runs it.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WAN == nil {
		o.WAN = func() (wan.Status, bool) { return wan.Status{}, false }
	}
	return &Service{o: o, trigger: make(chan struct{}, 1), pulled: map[string]string{}, stale: map[string]bool{}, full: map[string]bool{}}
}

// Now asks for a backup run at once (pull, snapshot, upload everything pending).
func (s *Service) Now() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// staleEvery is how often the destinations' ages are judged.
const staleEvery = 5 * time.Second

// Run serves until ctx ends. Work left pending by a crash is taken up at once.
func (s *Service) Run(ctx context.Context) error {
	cfg := s.o.Config()
	if !cfg.Backup.Enabled() {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.startEndpoint(ctx, cfg, &wg); err != nil {
		return err
	}
	s.setNext(nextAt(cfg.Backup, s.o.Now()))
	for _, d := range cfg.Backup.Destinations {
		m, err := s.manifest(d.Name)
		if err == nil && m.Since.IsZero() {
			m.Since = s.o.Now().UTC()
			err = m.save(s.o.StateDir)
		}
		if err != nil {
			return err
		}
	}
	for {
		cfg = s.o.Config()
		now := s.o.Now()
		if now.Before(version.ClockFloor()) {
			// The clock is not set yet (a Pi without a battery, before it reached a time
			// server): no copy is stamped, and no age judged, with a 1970 clock. The PBX's
			// pushes are still received.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
			continue
		}
		s.mu.Lock()
		due := !now.Before(s.nextRun)
		s.mu.Unlock()
		select {
		case <-s.trigger:
			due = true
		default:
		}
		if due {
			s.collect(ctx, cfg)
			s.setNext(nextAt(cfg.Backup, now))
		}
		wake := s.nextRunTime()
		for _, d := range cfg.Backup.Destinations {
			m, err := s.manifest(d.Name)
			if err != nil {
				s.o.Log.Error("backup", "err", err)
				continue
			}
			if due || (m.Pending && !now.Before(m.NextRetry)) {
				m = s.sync(ctx, cfg, d, m)
			}
			if m.Pending && m.NextRetry.Before(wake) {
				wake = m.NextRetry
			}
		}
		if due {
			s.pruneMedium(cfg)
		}
		s.checkQuotas(cfg)
		s.checkStale(cfg)
		if ctx.Err() != nil {
			return nil
		}
		wait := min(time.Until(wake), staleEvery)
		select {
		case <-ctx.Done():
			return nil
		case <-s.trigger:
			s.Now() // seen at the top of the loop
		case <-time.After(max(wait, 10*time.Millisecond)):
		}
	}
}

func (s *Service) setNext(t time.Time) {
	s.mu.Lock()
	s.nextRun = t
	s.mu.Unlock()
}

func (s *Service) nextRunTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextRun
}

// nextAt is the next daily run time after now.
func nextAt(b config.Backup, now time.Time) time.Time {
	h, m := b.AtClock()
	t := time.Date(now.Year(), now.Month(), now.Day(), h, m, 0, 0, now.Location())
	if !t.After(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t
}

func (s *Service) manifest(name string) (*Manifest, error) { return LoadManifest(s.o.StateDir, name) }

func (s *Service) setBusy(what string) {
	s.mu.Lock()
	s.busy = what
	s.mu.Unlock()
}

// collect pulls from the PBXes that are pulled and snapshots the box's own files.
func (s *Service) collect(ctx context.Context, cfg *config.Config) {
	for _, p := range cfg.Backup.PBX {
		if p.Mode != "pull" {
			continue
		}
		s.setBusy("pulling from " + p.Name)
		pctx, cancel := context.WithTimeout(ctx, 6*time.Hour)
		got, err := receive.Pull(pctx, p, cfg.Backup.Dir, s.o.Log)
		cancel()
		res := fmt.Sprintf("%s: %d new file(s)", s.o.Now().UTC().Format(time.RFC3339), len(got))
		if err != nil && s.asQuota(p.Name, err) {
			res = fmt.Sprintf("%s: %d new file(s), stopped: %v", s.o.Now().UTC().Format(time.RFC3339), len(got), err)
		} else if err != nil {
			res = fmt.Sprintf("%s: failed: %v", s.o.Now().UTC().Format(time.RFC3339), err)
			s.publish("backup.failed", events.Warn, "backup: pulling from PBX "+p.Name+" failed: "+err.Error(), map[string]string{"pbx": p.Name})
		}
		s.mu.Lock()
		s.pulled[p.Name] = res
		s.mu.Unlock()
	}
	if s.o.BoxFiles != nil {
		s.setBusy("saving the box's configuration")
		if _, err := snapshot(cfg.Backup.Dir, s.o.BoxFiles(), s.o.Now()); err != nil {
			s.publish("backup.failed", events.Warn, err.Error(), nil)
		}
	}
	s.setBusy("")
}

// uplinkBlocked says why uploads must wait now, or "".
func (s *Service) uplinkBlocked(cfg *config.Config) string {
	if cfg.Backup.OverBackupUplink {
		return ""
	}
	if st, ok := s.o.WAN(); ok && st.Active == wan.Backup {
		return "the backup uplink carries the office: uploads wait for the primary one (backup.over_backup_uplink = false)"
	}
	return ""
}

// dialer is how uploads reach the destinations: bound to the primary uplink, unless they
// may use either.
func dialer(cfg *config.Config) offsite.DialFunc {
	if cfg.Backup.OverBackupUplink || cfg.Uplink.Primary == nil {
		return nil
	}
	return offsite.BindDialer(cfg.Uplink.Primary.Interface)
}

// sync sends every source not yet at d, verifies each copy, then prunes by the policy. A
// failure is recorded for a retry with backoff; the manifest is saved at each step.
func (s *Service) sync(ctx context.Context, cfg *config.Config, d config.BackupDest, m *Manifest) *Manifest {
	if why := s.uplinkBlocked(cfg); why != "" {
		s.mu.Lock()
		s.waiting = why
		s.mu.Unlock()
		m.Pending, m.NextRetry = true, s.o.Now().Add(cfg.Backup.RetryMin)
		_ = m.save(s.o.StateDir)
		return m
	}
	s.mu.Lock()
	s.waiting = ""
	s.mu.Unlock()
	m.Pending = true
	if err := m.save(s.o.StateDir); err != nil {
		s.o.Log.Error("backup", "err", err)
	}
	n, bytes, err := s.upload(ctx, cfg, d, m)
	if err == nil {
		err = s.prune(ctx, cfg, d, m)
	}
	s.setBusy("")
	if err != nil {
		if ctx.Err() != nil {
			return m // stopping: taken up again at the next start
		}
		m.Attempts++
		m.NextRetry = s.o.Now().Add(backoff(cfg.Backup, m.Attempts))
		m.LastError = err.Error()
		_ = m.save(s.o.StateDir)
		s.publish("backup.failed", events.Warn, fmt.Sprintf("backup to %s failed (attempt %d, next try %s): %v", d.Name, m.Attempts,
			m.NextRetry.UTC().Format(time.RFC3339), err), map[string]string{"destination": d.Name})
		return m
	}
	m.Pending, m.Attempts, m.NextRetry, m.LastError = false, 0, time.Time{}, ""
	_ = m.save(s.o.StateDir)
	if n > 0 {
		s.publish("backup.ok", events.Info, fmt.Sprintf("backup to %s: %d copy(ies), %s, sent and verified", d.Name, n, humanBytes(bytes)),
			map[string]string{"destination": d.Name, "copies": strconv.Itoa(n)})
	}
	return m
}

// backoff doubles from retry_min up to retry_max.
func backoff(b config.Backup, attempts int) time.Duration {
	d := b.RetryMin
	for i := 1; i < attempts && d < b.RetryMax; i++ {
		d *= 2
	}
	return min(d, b.RetryMax)
}

func (s *Service) upload(ctx context.Context, cfg *config.Config, d config.BackupDest, m *Manifest) (int, int64, error) {
	srcs, err := sources(cfg.Backup.Dir)
	if err != nil {
		return 0, 0, err
	}
	var todo []source
	for _, src := range srcs {
		if !m.has(src.File, src.Made) {
			todo = append(todo, src)
		}
	}
	if len(todo) == 0 {
		return 0, 0, nil
	}
	rcpt, err := age.ParseX25519Recipient(d.Recipient)
	if err != nil {
		return 0, 0, err
	}
	st, err := offsite.Open(ctx, d, dialer(cfg))
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	var lim *rate.Limiter
	if cfg.Backup.RateKbit > 0 {
		bps := cfg.Backup.RateKbit * 1000 / 8
		lim = rate.NewLimiter(rate.Limit(bps), min(max(bps/4, 4096), 256<<10))
	}
	var total int64
	for i, src := range todo {
		s.setBusy(fmt.Sprintf("sending %s to %s", src.File, d.Name))
		name := objectName(src)
		sn, err := send(ctx, st, name, src.Path, rcpt, lim)
		if err == nil {
			s.setBusy(fmt.Sprintf("verifying %s at %s", src.File, d.Name))
			err = verify(ctx, st, name, sn)
		}
		if err != nil {
			return i, total, fmt.Errorf("%s: %w", src.File, err)
		}
		m.Entries = append(m.Entries, Entry{Series: src.Series, File: src.File, Object: name, Made: src.Made, Size: sn.size,
			SHA256: sn.sha256, CipherSize: sn.cipherSize, CipherSHA256: sn.cipherSHA, Verified: s.o.Now().UTC()})
		if err := m.save(s.o.StateDir); err != nil {
			return i, total, err
		}
		total += sn.size
	}
	return len(todo), total, nil
}

// prune deletes the copies the policy does not keep; each is marked pruned only once
// deleted.
func (s *Service) prune(ctx context.Context, cfg *config.Config, d config.BackupDest, m *Manifest) error {
	p := Policy{cfg.Backup.KeepDaily, cfg.Backup.KeepWeekly, cfg.Backup.KeepMonthly}
	idx := p.prunable(m)
	if len(idx) == 0 {
		return nil
	}
	st, err := offsite.Open(ctx, d, dialer(cfg))
	if err != nil {
		return err
	}
	defer st.Close()
	for _, i := range idx {
		if err := st.Delete(ctx, m.Entries[i].Object); err != nil {
			return err
		}
		m.Entries[i].Pruned = s.o.Now().UTC()
		if err := m.save(s.o.StateDir); err != nil {
			return err
		}
	}
	return nil
}

// checkStale raises backup.stale for each destination whose newest verified copy (or,
// with none yet, whose configuration) is older than max_age, and clears it when fresh.
func (s *Service) checkStale(cfg *config.Config) {
	now := s.o.Now()
	for _, d := range cfg.Backup.Destinations {
		m, err := s.manifest(d.Name)
		if err != nil {
			continue
		}
		if m.Since.IsZero() { // added by a reload: its age counts from now
			m.Since = now.UTC()
			_ = m.save(s.o.StateDir)
		}
		stale, msg := staleness(m, cfg.Backup.MaxAge, now)
		key := "backup.stale." + d.Name
		s.mu.Lock()
		was := s.stale[d.Name]
		s.stale[d.Name] = stale
		s.mu.Unlock()
		switch {
		case stale && !was:
			if s.o.Alerts != nil {
				s.o.Alerts.Raise(key, "backup", msg)
			}
			s.publish("backup.stale", events.Alert, msg, map[string]string{"destination": d.Name})
		case !stale && was && s.o.Alerts != nil:
			s.o.Alerts.Clear(key)
		}
	}
}

// staleness judges one destination.
func staleness(m *Manifest, maxAge time.Duration, now time.Time) (bool, string) {
	if e, ok := m.Newest(); ok {
		if age := now.Sub(e.Verified); age > maxAge {
			return true, fmt.Sprintf("backup: the newest verified copy at %s is %s old (more than %s)", m.Destination, age.Round(time.Second), maxAge)
		}
		return false, ""
	}
	if !m.Since.IsZero() && now.Sub(m.Since) > maxAge {
		return true, fmt.Sprintf("backup: no verified copy at %s yet, %s after it was set up (%s)", m.Destination, now.Sub(m.Since).Round(time.Second), m.LastError)
	}
	return false, ""
}

func (s *Service) publish(kind string, sev events.Severity, msg string, f map[string]string) {
	if sev == events.Info {
		s.o.Log.Info(msg)
	} else {
		s.o.Log.Warn(msg)
	}
	if s.o.Bus != nil {
		s.o.Bus.Publish(events.Event{Kind: kind, Severity: sev, Source: "backup", Message: msg, Fields: f})
	}
}

// startEndpoint listens for pushing PBXes on the LAN addresses only, when any pushes.
func (s *Service) startEndpoint(ctx context.Context, cfg *config.Config, wg *sync.WaitGroup) error {
	push := false
	for _, p := range cfg.Backup.PBX {
		push = push || p.Mode == "push"
	}
	if !push || cfg.Backup.Port == 0 {
		return nil
	}
	key, err := receive.HostKey(filepath.Join(s.o.StateDir, "backup", "ssh_host_ed25519_key"))
	if err != nil {
		return err
	}
	srv := &receive.Server{Config: s.o.Config, HostKey: key, Log: s.o.Log, Received: func(pbx, path string) {
		s.publish("backup.received", events.Info, "backup received from PBX "+pbx+": "+filepath.Base(path), map[string]string{"pbx": pbx})
	}, QuotaHit: s.quotaHit}
	var where []string
	for _, a := range cfg.LAN.Addresses {
		where = append(where, "sftp://"+net.JoinHostPort(a.Addr().String(), strconv.Itoa(int(cfg.Backup.Port))))
	}
	s.mu.Lock()
	s.endpoint = strings.Join(where, ", ") + " (host key " + ssh.FingerprintSHA256(key.PublicKey()) + ")"
	s.mu.Unlock()
	for _, a := range cfg.LAN.Addresses {
		ln, err := bind.ListenFree(ctx, netip.AddrPortFrom(a.Addr(), uint16(cfg.Backup.Port))) // up even if the LAN address comes a moment later
		if err != nil {
			return fmt.Errorf("backup: endpoint: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, ln); err != nil {
				s.o.Log.Error("backup endpoint", "err", err)
			}
		}()
	}
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
