package cfgedit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// A first config (the setup state's) not confirmed in time is moved into the history and
// removed, and the daemon is told to go back to the setup state; confirmed, it stays.
func TestFirstConfig(t *testing.T) {
	for _, confirm := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "perm", "appliance.toml")
		unset := make(chan struct{}, 1)
		o := Options{Path: path, Window: 300 * time.Millisecond, Unset: func() { unset <- struct{}{} }}
		if _, err := First(o, []byte("[lan]\ninterface = 7\n"), "setup page"); err == nil {
			t.Fatal("First took a config with errors")
		} else if ce := (*CheckError)(nil); !errors.As(err, &ce) || !strings.Contains(ce.Check.Errors[0].Text, "appliance.toml:2") {
			t.Fatalf("a bad first config: %v, want a CheckError naming the line", err)
		}
		p, err := First(o, config.Example(), "setup page")
		if err != nil {
			t.Fatal(err)
		}
		if p.Previous != "" || p.What != WhatFirst {
			t.Fatalf("pending %+v", p)
		}
		if _, err := First(o, config.Example(), "setup page"); !errors.Is(err, ErrExists) {
			t.Fatalf("a second First: %v, want ErrExists", err)
		}
		// The daemon starts from the file and makes its editor, which finds the change.
		e, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := e.Pending(); !ok || got.ID != p.ID {
			t.Fatalf("the daemon's editor does not see the first config waiting: %+v %v", got, ok)
		}
		if confirm {
			if err := e.Confirm(context.Background(), p.ID, "admin"); err != nil {
				t.Fatal(err)
			}
		}
		run(t, e)
		if !confirm {
			select {
			case <-unset:
			case <-time.After(10 * time.Second):
				t.Fatal("the first config was not put back")
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the first config is still there: %v", err)
			}
			vs, err := e.History()
			if err != nil || len(vs) != 1 {
				t.Fatalf("history %v %v, want the first config kept", vs, err)
			}
			if b, _ := e.Version(vs[0].Name); string(b) != string(config.Example()) {
				t.Fatal("the history does not hold the first config")
			}
			if _, ok := e.Pending(); ok {
				t.Fatal("still pending")
			}
			continue
		}
		// Confirmed: past the deadline the file is in force, nothing told.
		labtest.WaitFor(t, "the deadline to pass", 5*time.Second, func() bool { return time.Now().After(p.Deadline.Add(200 * time.Millisecond)) })
		select {
		case <-unset:
			t.Fatal("a confirmed first config was put back")
		default:
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != string(config.Example()) {
			t.Fatalf("confirmed first config: %v", err)
		}
	}
}
