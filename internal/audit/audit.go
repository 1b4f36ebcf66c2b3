// Package audit keeps the append-only record of who changed what on the box, and exports it as CSV.
package audit

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// Entry is one change or action.
type Entry struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`    // "admin" (web login), a Unix user (CLI), "button", "daemon"
	From   string    `json:"from"`   // address the action came from, "console", "box"
	Via    string    `json:"via"`    // web, cli, button, config
	What   string    `json:"what"`   // e.g. "uplink.force", "block", "config.changed"
	Before string    `json:"before"` // value before, "" when not applicable
	After  string    `json:"after"`  // value after
}

// Log is an audit log file: one JSON object per line, each fsync'd before Record returns, so
// an acknowledged action survives a power cut.
type Log struct {
	path string
	mu   sync.Mutex
	now  func() time.Time
}

// Open returns the log at path (created on first record).
func Open(path string) *Log { return &Log{path: path, now: time.Now} }

// Path is the log file's path.
func (l *Log) Path() string { return l.path }

// Record appends one entry, stamping its time if unset.
func (l *Log) Record(e Entry) error {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// A torn line from a power cut mid-write must not glue itself to this record.
	if err := l.endLine(); err != nil {
		return err
	}
	if err := store.Append(l.path, append(b, '\n')); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func (l *Log) endLine() error {
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, st.Size()-1); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if last[0] != '\n' {
		return store.Append(l.path, []byte("\n"))
	}
	return nil
}

// Entries reads every entry, oldest first; torn or garbled lines are skipped.
func (l *Log) Entries() ([]Entry, error) {
	return Read(l.path)
}

// Read reads the entries of the log file at path.
func Read(path string) ([]Entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var out []Entry
	// Split by hand, not with a bufio.Scanner: its line limit would end the reading at the
	// first very long line and silently drop every entry after it.
	for line := range bytes.Lines(b) {
		var e Entry
		if json.Unmarshal(line, &e) == nil && !e.Time.IsZero() {
			out = append(out, e)
		}
	}
	return out, nil
}

// WriteCSV writes entries as CSV with a header line.
func WriteCSV(w io.Writer, entries []Entry) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"time", "who", "from", "via", "what", "before", "after"})
	for _, e := range entries {
		_ = cw.Write([]string{e.Time.UTC().Format(time.RFC3339), csvSafe(e.Who), csvSafe(e.From), csvSafe(e.Via), csvSafe(e.What), csvSafe(e.Before), csvSafe(e.After)})
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe defuses values a spreadsheet would run as a formula (an attacker chooses some of
// them, e.g. a SIP user name in a block reason).
func csvSafe(s string) string {
	if s != "" && bytes.ContainsRune([]byte("=+-@\t\r"), rune(s[0])) {
		return "'" + s
	}
	return s
}
