package labtest

import (
	"bytes"
	"sync"
)

// LogBuffer collects what a part under test logs, for the test to read while the part's
// goroutines still write (a bytes.Buffer alone would race).
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
