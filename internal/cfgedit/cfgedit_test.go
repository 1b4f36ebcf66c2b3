package cfgedit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// site is a test's config file and what the "daemon" took from it.
type site struct {
	path string
	mu   sync.Mutex
	took []string // the file's text at each reload
	who  []string
	fail error // the next reload's refusal
	al   []string
	aud  []string
}

func newSite(t *testing.T) *site {
	t.Helper()
	s := &site{path: filepath.Join(t.TempDir(), "appliance.toml")}
	if err := os.WriteFile(s.path, config.Example(), 0o640); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *site) options(window time.Duration) Options {
	return Options{Path: s.path, Window: window, Keep: 3,
		Reload: func(who string) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if err := s.fail; err != nil {
				s.fail = nil
				return err
			}
			b, _ := os.ReadFile(s.path)
			s.took = append(s.took, string(b))
			s.who = append(s.who, who)
			return nil
		},
		Alert: func(msg string) { s.mu.Lock(); s.al = append(s.al, msg); s.mu.Unlock() },
		Audit: func(who, what, before, after string) {
			s.mu.Lock()
			s.aud = append(s.aud, what+" by "+who)
			s.mu.Unlock()
		}}
}

func (s *site) file(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noAdmin is the example with its admin network removed (a narrowing: no force needed).
func noAdmin() []byte {
	return []byte(strings.Replace(string(config.Example()), `networks = ["203.0.113.200/32"]`, `networks = []`, 1))
}

func run(t *testing.T, e *Editor) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A change not confirmed is put back by itself: the old file, reloaded, an alert and an
// audit entry saying so.
func TestUnconfirmedIsPutBack(t *testing.T) {
	s := newSite(t)
	e, err := New(s.options(300 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	run(t, e)
	old := s.file(t)
	p, err := e.Apply(context.Background(), noAdmin(), "admin (web 192.0.2.30)", false)
	if err != nil {
		t.Fatal(err)
	}
	if s.file(t) != string(noAdmin()) {
		t.Fatal("the candidate is not the file in force")
	}
	if st, _ := os.Stat(s.path); st.Mode().Perm() != 0o640 {
		t.Errorf("the file's mode became %v", st.Mode().Perm())
	}
	if _, ok := e.Pending(); !ok {
		t.Fatal("no change waiting for its confirmation")
	}
	labtest.WaitFor(t, "the change to be put back", 10*time.Second, func() bool { _, ok := e.Pending(); return !ok })
	if s.file(t) != old {
		t.Fatal("the old file is not back")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.took) != 2 || s.took[1] != old || !strings.Contains(s.who[1], "not confirmed") {
		t.Errorf("reloads: %d by %q", len(s.took), s.who)
	}
	if a := s.al[len(s.al)-1]; !strings.Contains(a, "was not confirmed") || !strings.Contains(a, p.Previous) {
		t.Errorf("alert %q", a)
	}
	if len(s.aud) != 1 || s.aud[0] != "config.reverted by box" {
		t.Errorf("audit %q", s.aud)
	}
	if _, err := os.Stat(filepath.Join(s.path+".history", pendingFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the waiting change is still on disk: %v", err)
	}
}

// A confirmed change stays, even once its deadline has passed.
func TestConfirmedStays(t *testing.T) {
	s := newSite(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	o := s.options(time.Minute)
	o.Now = func() time.Time { return now }
	e, _ := New(o)
	p, err := e.Apply(context.Background(), noAdmin(), "admin", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Confirm(context.Background(), "wrong", "admin"); !errors.Is(err, ErrNoSuch) {
		t.Errorf("confirming another id: %v", err)
	}
	if err := e.Confirm(context.Background(), p.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	e.expire()
	if s.file(t) != string(noAdmin()) {
		t.Error("a confirmed change was put back")
	}
	if len(s.aud) != 1 || s.aud[0] != "config.confirmed by admin" {
		t.Errorf("audit %q", s.aud)
	}
}

// The daemon restarting inside the window does not save the change: the next run puts it
// back at the same deadline.
func TestRestartInWindowStillReverts(t *testing.T) {
	s := newSite(t)
	old := s.file(t)
	first, _ := New(s.options(500 * time.Millisecond)) // never runs: the daemon "died"
	if _, err := first.Apply(context.Background(), noAdmin(), "admin", false); err != nil {
		t.Fatal(err)
	}
	second, err := New(s.options(500 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := second.Pending(); !ok || p.By != "admin" {
		t.Fatalf("the restarted editor does not know the waiting change: %+v", p)
	}
	run(t, second)
	labtest.WaitFor(t, "the change to be put back after the restart", 10*time.Second, func() bool { return s.file(t) == old })
}

// A box that restarts with its clock far behind (a Pi after a power cut, before NTP) still
// puts the change back within one window, not when its clock reaches the old deadline.
func TestRestartWithClockBehindStillReverts(t *testing.T) {
	s := newSite(t)
	old := s.file(t)
	first, _ := New(s.options(time.Minute))
	if _, err := first.Apply(context.Background(), noAdmin(), "admin", false); err != nil {
		t.Fatal(err)
	}
	o := s.options(500 * time.Millisecond)
	o.Now = func() time.Time { return time.Now().AddDate(-1, 0, 0) }
	second, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	run(t, second)
	labtest.WaitFor(t, "the change to be put back after a restart with the clock a year behind", 10*time.Second, func() bool { return s.file(t) == old })
}

// A bad candidate is refused with the line, column and field, and changes nothing.
func TestBadCandidate(t *testing.T) {
	s := newSite(t)
	e, _ := New(s.options(time.Minute))
	bad := strings.Replace(string(config.Example()), `ssh_port = 22`, `ssh_port = "twenty-two"`, 1)
	c := e.Check([]byte(bad))
	if len(c.Errors) == 0 || c.Errors[0].Line == 0 || c.Errors[0].Field != "admin.ssh_port" || !strings.Contains(c.Errors[0].Text, s.path+":") {
		t.Fatalf("errors %+v", c.Errors)
	}
	_, err := e.Apply(context.Background(), []byte(bad), "admin", false)
	var ce *CheckError
	if !errors.As(err, &ce) || len(ce.Check.Errors) == 0 {
		t.Fatalf("apply: %v", err)
	}
	if s.file(t) != string(config.Example()) || len(s.took) != 0 {
		t.Error("a refused candidate changed the file or reloaded")
	}
	if _, err := e.Apply(context.Background(), config.Example(), "admin", false); !errors.Is(err, ErrNoChange) {
		t.Errorf("the same file again: %v", err)
	}
}

// Letting more of the internet in is shown in the firewall diff and needs force.
func TestWideningNeedsForce(t *testing.T) {
	s := newSite(t)
	e, _ := New(s.options(time.Minute))
	wide := []byte(strings.Replace(string(config.Example()), `networks = ["203.0.113.200/32"]`, `networks = ["203.0.113.200/32", "198.51.100.0/24"]`, 1))
	c := e.Check(wide)
	if len(c.Widening) != 1 || !strings.Contains(c.Widening[0], "admin4") || !strings.Contains(c.Widening[0], "198.51.100.0/24") {
		t.Errorf("widening %q", c.Widening)
	}
	if !strings.Contains(c.Firewall, "+ \t\telements = { 203.0.113.200, 198.51.100.0/24 }") || !strings.Contains(c.Firewall, "- \t\telements = { 203.0.113.200 }") {
		t.Errorf("firewall diff:\n%s", c.Firewall)
	}
	if _, err := e.Apply(context.Background(), wide, "admin", false); !errors.Is(err, ErrWidening) {
		t.Fatalf("unforced widening: %v", err)
	}
	if _, err := e.Apply(context.Background(), wide, "admin", true); err != nil {
		t.Fatalf("forced widening: %v", err)
	}
	if _, err := e.Apply(context.Background(), noAdmin(), "admin", false); !errors.Is(err, ErrPending) {
		t.Errorf("a second change while one waits: %v", err)
	}
	if c := e.Check(noAdmin()); len(c.Widening) != 0 {
		t.Errorf("a narrowing is flagged: %q", c.Widening)
	}
}

// A change the daemon refuses leaves the old file in place and nothing waiting.
func TestRefusedByDaemon(t *testing.T) {
	s := newSite(t)
	e, _ := New(s.options(time.Minute))
	s.fail = errors.New("the kernel refused the ruleset")
	if _, err := e.Apply(context.Background(), noAdmin(), "admin", false); err == nil || !strings.Contains(err.Error(), "kernel refused") {
		t.Fatalf("apply: %v", err)
	}
	if s.file(t) != string(config.Example()) {
		t.Error("the refused file stayed")
	}
	if _, ok := e.Pending(); ok {
		t.Error("a refused change waits for confirmation")
	}
}

// The history keeps the last few versions, and a rollback is a change to confirm.
func TestHistoryAndRollback(t *testing.T) {
	s := newSite(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	o := s.options(time.Minute)
	o.Now = func() time.Time { return now }
	e, _ := New(o)
	var texts []string
	for i := range 5 {
		now = now.Add(time.Second)
		text := string(config.Example()) + strings.Repeat("\n# edit", i+1) + "\n"
		texts = append(texts, text)
		p, err := e.Apply(context.Background(), []byte(text), "admin", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Confirm(context.Background(), p.ID, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := e.History()
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || !vs[0].Time.After(vs[1].Time) {
		t.Fatalf("history %+v", vs)
	}
	// The newest version kept is the file before the last change.
	if b, _ := e.Version(vs[0].Name); string(b) != texts[3] {
		t.Errorf("newest version is not the file before the last change")
	}
	if _, err := e.Version("../appliance.toml"); err == nil {
		t.Error("a path outside the history was read")
	}
	now = now.Add(time.Second)
	p, err := e.Rollback(context.Background(), vs[2].Name, "admin", false)
	if err != nil {
		t.Fatal(err)
	}
	if s.file(t) != texts[1] || !strings.HasPrefix(p.What, "rollback to ") {
		t.Errorf("rollback: %+v", p)
	}
	now = now.Add(2 * time.Minute)
	e.expire()
	if s.file(t) != texts[4] {
		t.Error("an unconfirmed rollback was not put back")
	}
}
