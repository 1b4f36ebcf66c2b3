package cfgedit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/officeedge/appliance/internal/store"
)

// WhatFirst is the Pending.What of a first config written by the setup state.
const WhatFirst = "first config (setup)"

// ErrExists is First's refusal when the box already has a config.
var ErrExists = errors.New("cfgedit: the box already has a config")

// First writes candidate as the box's first config, at a path where no file is, as a change
// waiting for its confirmation whose Previous is "": the setup state's config, taken by the
// daemon that starts from it and removed again unless confirmed in time (Run moves it into
// the history and calls Options.Unset). o.Reload is not called (no daemon runs yet); o's
// defaults are New's. A refused candidate is a *CheckError.
func First(o Options, candidate []byte, by string) (Pending, error) {
	if _, err := os.Stat(o.Path); err == nil {
		return Pending{}, ErrExists
	} else if !errors.Is(err, os.ErrNotExist) {
		return Pending{}, fmt.Errorf("cfgedit: %w", err)
	}
	c := CheckFile(o.Path, nil, candidate)
	if len(c.Errors) > 0 {
		return Pending{}, &CheckError{Check: c, Err: c.err}
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o700); err != nil {
		return Pending{}, fmt.Errorf("cfgedit: %w", err)
	}
	e, err := New(o) // o's defaults, as the daemon's editor will have them
	if err != nil {
		return Pending{}, err
	}
	o = e.o
	now := o.Now()
	p := Pending{ID: newID(), By: by, What: WhatFirst, Since: now, Deadline: now.Add(o.Window)}
	// As in apply: the waiting change is on disk before the file, so a crash in between
	// finds a change to put back (which removes a file that may not be there).
	if err := e.setPending(&p); err != nil {
		return Pending{}, err
	}
	if err := e.write(candidate); err != nil {
		_ = e.setPending(nil)
		return Pending{}, err
	}
	return p, nil
}

// unsetFirst puts back a first config not confirmed in time: the file goes into the history
// (what the person typed is not lost) and is removed, so the box starts its setup state again.
func (e *Editor) unsetFirst(p *Pending) error {
	b, err := os.ReadFile(e.o.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("cfgedit: %w", err)
	default:
		if _, err := e.save(b, e.o.Now()); err != nil {
			return err
		}
	}
	if err := store.Remove(e.o.Path); err != nil {
		return fmt.Errorf("cfgedit: %w", err)
	}
	if err := e.setPending(nil); err != nil {
		return err
	}
	msg := fmt.Sprintf("the first config by %s was not confirmed within %s: it was moved into the history and the box is back in its setup state", p.By, e.o.Window)
	e.o.Log.Warn(msg)
	e.o.Audit("box", "config.reverted", p.What+" by "+p.By, "none (setup state)")
	return nil
}
