// Package cfgedit changes the config file from the page: checked first, the old file kept in a history, and put back by itself unless the change is confirmed in time.
package cfgedit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// Defaults of Options.
const (
	DefaultWindow = 2 * time.Minute
	DefaultKeep   = 20
)

// Options say which file is edited and how the daemon takes it.
type Options struct {
	Path string // the config file
	// Dir holds the earlier versions and the change waiting for its confirmation; it sits
	// next to the config (on /perm on the image), so both survive a restart. Default:
	// Path + ".history".
	Dir    string
	Keep   int           // earlier versions kept; default DefaultKeep
	Window time.Duration // time to confirm a change before it is put back; default DefaultWindow
	// Reload makes the daemon take the file at Path now, recording who changed it; an error
	// means the running configuration stayed as it was.
	Reload func(who string) error
	// Audit records a confirmation or a revert (the change itself is recorded by Reload).
	Audit func(who, what, before, after string)
	// Alert says a change was put back ("" once one is confirmed or made again).
	Alert func(msg string)
	// Unset is called once a first config (First) that was not confirmed in time has been
	// moved into the history and removed: the daemon has no config and goes back to the
	// setup state. It must not call the Editor.
	Unset func()
	Log   *slog.Logger
	Now   func() time.Time
}

// Errors of Apply and Confirm; a refused candidate comes as a *CheckError.
var (
	ErrPending  = errors.New("cfgedit: a change is waiting for its confirmation: confirm it or let it be put back first")
	ErrNoChange = errors.New("cfgedit: the candidate is the file in force")
	ErrNoSuch   = errors.New("cfgedit: no change is waiting with that id")
	ErrWidening = errors.New("cfgedit: the change lets more of the internet reach the office: apply it with force if that is meant")
)

// CheckError is a candidate refused by its check: its errors, or a widening not forced.
type CheckError struct {
	Check Check
	Err   error // ErrWidening, or the config's errors
}

func (e *CheckError) Error() string { return e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// Pending is an applied change that is put back at Deadline unless confirmed.
type Pending struct {
	ID       string    `json:"id"`
	By       string    `json:"by"`
	What     string    `json:"what"` // "edit" or "rollback to NAME"
	Since    time.Time `json:"since"`
	Deadline time.Time `json:"deadline"`
	Previous string    `json:"previous"` // the history version put back
}

// Version is an earlier config file kept in the history.
type Version struct {
	Name string    `json:"name"`
	Time time.Time `json:"time"`
	Size int64     `json:"size"`
}

// Editor applies, confirms and reverts changes of one file; its methods are safe to call at
// once (changes are made one at a time) and Run puts back what is not confirmed.
type Editor struct {
	o    Options
	mu   sync.Mutex // one change at a time
	pend *Pending
	kick chan struct{}
}

const pendingFile = "pending.json"

// New makes an editor and reads a change left waiting by an earlier run (Run acts on it).
func New(o Options) (*Editor, error) {
	if o.Dir == "" {
		o.Dir = o.Path + ".history"
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Audit == nil {
		o.Audit = func(string, string, string, string) {}
	}
	if o.Alert == nil {
		o.Alert = func(string) {}
	}
	if o.Unset == nil {
		o.Unset = func() {}
	}
	e := &Editor{o: o, kick: make(chan struct{}, 1)}
	b, err := os.ReadFile(filepath.Join(o.Dir, pendingFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("cfgedit: %w", err)
	default:
		var p Pending
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("cfgedit: %s: %w", filepath.Join(o.Dir, pendingFile), err)
		}
		// A Pi has no clock battery: after a power cut it may start with a clock far behind the
		// one that set the deadline. The change gets at most one window from now.
		if limit := o.Now().Add(o.Window); p.Deadline.After(limit) {
			p.Deadline = limit
		}
		e.pend = &p
	}
	return e, nil
}

// Window is the time a change has to be confirmed.
func (e *Editor) Window() time.Duration { return e.o.Window }

// Current is the file in force.
func (e *Editor) Current() ([]byte, error) {
	b, err := os.ReadFile(e.o.Path)
	if err != nil {
		return nil, fmt.Errorf("cfgedit: %w", err)
	}
	return b, nil
}

// Pending is the change waiting for its confirmation, if any.
func (e *Editor) Pending() (Pending, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pend == nil {
		return Pending{}, false
	}
	return *e.pend, true
}

// Check checks a candidate against the file in force.
func (e *Editor) Check(candidate []byte) Check {
	cur, _ := os.ReadFile(e.o.Path)
	return CheckFile(e.o.Path, cur, candidate)
}

// Run puts back each change not confirmed by its deadline, until ctx ends; a change left
// waiting by an earlier run (the daemon restarted in the window) keeps its deadline.
func (e *Editor) Run(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		t.Stop()
		if p, ok := e.Pending(); ok {
			t.Reset(max(p.Deadline.Sub(e.o.Now()), 0))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.kick:
		case <-t.C:
			e.expire()
		}
	}
}

// Apply checks candidate and makes it the file in force; it is put back after the window
// unless Confirm is called with the returned ID. A widening is refused unless forced.
func (e *Editor) Apply(ctx context.Context, candidate []byte, by string, force bool) (Pending, error) {
	return e.do(ctx, func() (Pending, error) { return e.apply(candidate, by, "edit", force) })
}

// Rollback makes an earlier version the file in force, as a change to confirm like any other.
func (e *Editor) Rollback(ctx context.Context, name, by string, force bool) (Pending, error) {
	return e.do(ctx, func() (Pending, error) {
		b, err := e.Version(name)
		if err != nil {
			return Pending{}, err
		}
		return e.apply(b, by, "rollback to "+name, force)
	})
}

// Confirm keeps the change with id for good.
func (e *Editor) Confirm(ctx context.Context, id, by string) error {
	_, err := e.do(ctx, func() (Pending, error) {
		if e.pend == nil || e.pend.ID != id {
			return Pending{}, ErrNoSuch
		}
		p := *e.pend
		if err := e.setPending(nil); err != nil {
			return Pending{}, err
		}
		e.o.Audit(by, "config.confirmed", "", fmt.Sprintf("%s by %s at %s", p.What, p.By, p.Since.UTC().Format(time.RFC3339)))
		e.o.Log.Info("configuration change confirmed", "by", by, "change", p.What)
		return p, nil
	})
	return err
}

// do runs a change under the lock; a caller whose ctx ends (a page gone, a web server
// stopping because of the very change) gets ctx's error while the change still completes.
func (e *Editor) do(ctx context.Context, f func() (Pending, error)) (Pending, error) {
	type result struct {
		p   Pending
		err error
	}
	ch := make(chan result, 1)
	go func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		p, err := f()
		ch <- result{p, err}
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}()
	select {
	case r := <-ch:
		return r.p, r.err
	case <-ctx.Done():
		return Pending{}, ctx.Err()
	}
}

func (e *Editor) apply(candidate []byte, by, what string, force bool) (Pending, error) {
	if e.pend != nil {
		return Pending{}, ErrPending
	}
	cur, err := os.ReadFile(e.o.Path)
	if err != nil {
		return Pending{}, fmt.Errorf("cfgedit: %w", err)
	}
	c := CheckFile(e.o.Path, cur, candidate)
	if len(c.Errors) > 0 {
		return Pending{}, &CheckError{Check: c, Err: c.err}
	}
	if len(c.Widening) > 0 && !force {
		return Pending{}, &CheckError{Check: c, Err: ErrWidening}
	}
	if !c.Changed {
		return Pending{}, ErrNoChange
	}
	now := e.o.Now()
	prev, err := e.save(cur, now)
	if err != nil {
		return Pending{}, err
	}
	p := Pending{ID: newID(), By: by, What: what, Since: now, Deadline: now.Add(e.o.Window), Previous: prev}
	// The waiting change is on disk before the file changes: a crash in between finds a
	// change to put back, which puts back the same file.
	if err := e.setPending(&p); err != nil {
		return Pending{}, err
	}
	if err := e.write(candidate); err != nil {
		_ = e.setPending(nil)
		return Pending{}, err
	}
	if err := e.o.Reload(by); err != nil {
		// The daemon kept the old configuration: the file goes back to match it.
		werr := e.write(cur)
		_ = e.setPending(nil)
		return Pending{}, errors.Join(fmt.Errorf("cfgedit: the daemon refused the change: %w", err), werr)
	}
	e.o.Alert("")
	e.o.Log.Info("configuration changed, waiting for its confirmation", "by", by, "change", what, "deadline", p.Deadline)
	return p, nil
}

// expire puts back the waiting change if its deadline has passed.
func (e *Editor) expire() {
	if e.expireLocked() {
		e.o.Unset()
	}
}

// expireLocked is expire under the lock; unset says a first config was removed.
func (e *Editor) expireLocked() (unset bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pend
	if p == nil || e.o.Now().Before(p.Deadline) {
		return false
	}
	if p.Previous == "" {
		err := e.unsetFirst(p)
		if err != nil {
			// The file stays in force: a box running is better than one stuck in between.
			msg := fmt.Sprintf("the first config by %s was not confirmed, and could not be removed: %v", p.By, err)
			e.o.Log.Error(msg)
			e.o.Alert(msg)
			_ = e.setPending(nil)
		}
		return err == nil
	}
	old, err := e.Version(p.Previous)
	if err == nil {
		err = e.write(old)
	}
	if err != nil {
		// Nothing to put back: keep what is in force and say so, rather than retry forever.
		msg := fmt.Sprintf("the change by %s was not confirmed, and could not be put back: %v", p.By, err)
		e.o.Log.Error(msg)
		e.o.Alert(msg)
		_ = e.setPending(nil)
		return false
	}
	who := fmt.Sprintf("box (not confirmed within %s: put back)", e.o.Window)
	rerr := e.o.Reload(who)
	_ = e.setPending(nil)
	msg := fmt.Sprintf("the configuration change by %s (%s) was not confirmed within %s: version %s was put back", p.By, p.What, e.o.Window, p.Previous)
	if rerr != nil {
		msg += ", but the daemon refused it: " + rerr.Error()
	}
	e.o.Log.Warn(msg)
	e.o.Alert(msg)
	e.o.Audit("box", "config.reverted", p.What+" by "+p.By, "version "+p.Previous)
	return false
}

func (e *Editor) write(b []byte) error {
	mode := os.FileMode(0o600)
	if st, err := os.Stat(e.o.Path); err == nil {
		mode = st.Mode().Perm()
	}
	if err := store.WriteFile(e.o.Path, b, mode); err != nil {
		return fmt.Errorf("cfgedit: %w", err)
	}
	return nil
}

func (e *Editor) setPending(p *Pending) error {
	path := filepath.Join(e.o.Dir, pendingFile)
	if p == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cfgedit: %w", err)
		}
		e.pend = nil
		return nil
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	if err := os.MkdirAll(e.o.Dir, 0o700); err != nil {
		return fmt.Errorf("cfgedit: %w", err)
	}
	if err := store.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("cfgedit: %w", err)
	}
	e.pend = p
	return nil
}

// versionLayout names a version by when it was replaced (UTC, sortable).
const versionLayout = "20060102T150405.000Z"

// save keeps b in the history and drops the oldest versions past Keep.
func (e *Editor) save(b []byte, now time.Time) (string, error) {
	if err := os.MkdirAll(e.o.Dir, 0o700); err != nil {
		return "", fmt.Errorf("cfgedit: history: %w", err)
	}
	name := now.UTC().Format(versionLayout) + ".toml"
	if err := store.WriteFile(filepath.Join(e.o.Dir, name), b, 0o600); err != nil {
		return "", fmt.Errorf("cfgedit: history: %w", err)
	}
	vs, err := e.History()
	if err != nil {
		return "", err
	}
	for _, v := range vs[min(e.o.Keep, len(vs)):] {
		_ = os.Remove(filepath.Join(e.o.Dir, v.Name))
	}
	return name, nil
}

// History lists the earlier versions, newest first.
func (e *Editor) History() ([]Version, error) {
	des, err := os.ReadDir(e.o.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cfgedit: history: %w", err)
	}
	var vs []Version
	for _, de := range des {
		t, ok := versionTime(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		v := Version{Name: de.Name(), Time: t}
		if fi, err := de.Info(); err == nil {
			v.Size = fi.Size()
		}
		vs = append(vs, v)
	}
	slices.SortFunc(vs, func(a, b Version) int { return strings.Compare(b.Name, a.Name) })
	return vs, nil
}

func versionTime(name string) (time.Time, bool) {
	base, ok := strings.CutSuffix(name, ".toml")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(versionLayout, base)
	return t, err == nil
}

// Version is the text of an earlier version; the name must be one History lists.
func (e *Editor) Version(name string) ([]byte, error) {
	if _, ok := versionTime(name); !ok || filepath.Base(name) != name {
		return nil, fmt.Errorf("cfgedit: %q is not a version in the history", name)
	}
	b, err := os.ReadFile(filepath.Join(e.o.Dir, name))
	if err != nil {
		return nil, fmt.Errorf("cfgedit: version %s: %w", name, err)
	}
	return b, nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
