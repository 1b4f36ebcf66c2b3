package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Entries survive in order; a line torn by a power cut is skipped and does not spoil the
// next record; the CSV export has every field and defuses spreadsheet formulas.
func TestRecordTornExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := Open(path)
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	if err := l.Record(Entry{Time: at, Who: "admin", From: "192.168.50.20", Via: "web", What: "uplink.force", Before: "auto", After: "backup"}); err != nil {
		t.Fatal(err)
	}
	// Power lost mid-write: half a record at the end of the file.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-11-21T10:00:01Z","who":"adm`)
	f.Close()
	if err := l.Record(Entry{Time: at.Add(time.Minute), Who: "button", From: "box", Via: "button", What: "button.short", After: "=HYPERLINK(\"x\")"}); err != nil {
		t.Fatal(err)
	}
	es, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].What != "uplink.force" || es[1].Who != "button" {
		t.Fatalf("entries = %+v, want the two whole records", es)
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, es); err != nil {
		t.Fatal(err)
	}
	want := "time,who,from,via,what,before,after\n" +
		"2026-11-21T10:00:00Z,admin,192.168.50.20,web,uplink.force,auto,backup\n" +
		"2026-11-21T10:01:00Z,button,box,button,button.short,,\"'=HYPERLINK(\"\"x\"\")\"\n"
	if b.String() != want {
		t.Errorf("CSV:\n%s\nwant:\n%s", b.String(), want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v, want 0600", st.Mode().Perm())
	}
	if !strings.HasSuffix(mustRead(t, path), "\n") {
		t.Error("log does not end with a whole line")
	}
}

// A very long entry (a big config change) neither hides nor loses the entries after it.
func TestLongEntry(t *testing.T) {
	l := Open(filepath.Join(t.TempDir(), "audit.log"))
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for i, e := range []Entry{
		{Time: at, What: "config.changed", After: strings.Repeat("x", 2<<20)},
		{Time: at.Add(time.Minute), What: "block", After: "192.0.2.1"},
	} {
		if err := l.Record(e); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	es, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || len(es[0].After) != 2<<20 || es[1].What != "block" {
		t.Fatalf("got %d entries, want the long one and the one after it", len(es))
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
