package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/clock"
)

// The hooks for what waits on a trusted clock follow the clock part in force.
func TestClockTrustHooks(t *testing.T) {
	a := &App{}
	a.parts = newParts(a, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if a.clockTrusted() || !errors.Is(a.waitClockTrusted(ctx), context.DeadlineExceeded) {
		t.Fatal("trusted without a clock part")
	}
	a.parts.on["clock"] = &partRun{r: &clockPart{c: clock.New(clock.Options{Now: func() time.Time { return time.Unix(0, 0) }})}}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if a.clockTrusted() || !errors.Is(a.waitClockTrusted(ctx2), context.DeadlineExceeded) {
		t.Fatal("a 1970 clock is trusted")
	}
	state := filepath.Join(t.TempDir(), "clock")
	if err := os.WriteFile(state, []byte(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The part restarts with a clock that the saved time makes trusted.
	a.parts.mu.Lock()
	a.parts.on["clock"] = &partRun{r: &clockPart{c: clock.New(clock.Options{StateFile: state})}}
	a.parts.mu.Unlock()
	if !a.clockTrusted() || a.waitClockTrusted(context.Background()) != nil {
		t.Fatal("the new clock part's trusted clock is not seen")
	}
	if st, ok := clockState(a); !ok || !st.Trusted {
		t.Fatalf("clockState: %+v %v", st, ok)
	}
}
