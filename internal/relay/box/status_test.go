package box

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/relay/wire"
)

// Voice goes into the tunnel only when what carries it answers: the current line, or with
// duplicate any line.
func TestUsable(t *testing.T) {
	fttc := wire.LineStats{Name: "FTTC", Current: true}
	lte := wire.LineStats{Name: "LTE", Reachable: true}
	if usable([]wire.LineStats{fttc, lte}, false) {
		t.Error("only the standby answers, without duplicate: nothing would reach the relay")
	}
	if !usable([]wire.LineStats{fttc, lte}, true) {
		t.Error("with duplicate, the standby's copies reach the relay")
	}
	fttc.Reachable = true
	if !usable([]wire.LineStats{fttc}, false) {
		t.Error("the current line answers")
	}
}

func TestDuplicatePerCallMinute(t *testing.T) {
	d := dupMeter{voiceDup: 600_000, voiceNanos: int64(2 * time.Minute)}
	if got := d.perMinute(); got != 300_000 {
		t.Errorf("perMinute = %v, want 300000", got)
	}
	if got := (dupMeter{voiceDup: 5000, voiceNanos: int64(30 * time.Second)}).perMinute(); got != 0 {
		t.Errorf("under a minute of voice: %v, want 0", got)
	}
}

func TestWriteTextDirect(t *testing.T) {
	st := Status{Using: UsingDirect, Endpoint: "relay.example.net:51830", PublicAddress: "203.0.113.40", Interface: "relay0",
		Lines: []wire.LineStats{{Name: "FTTC", Interface: "wan0", Current: true, Loss: 1}}}
	var b bytes.Buffer
	st.WriteText(&b)
	for _, want := range []string{"voice: DIRECT", "the relay answers on no line", "the office's voice address 203.0.113.40: the trunk provider must allow it",
		"FTTC on wan0: UNREACHABLE", "loss 100%"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWriteTextRelayRestarts(t *testing.T) {
	st := Status{Using: UsingRelay, Endpoint: "relay.example.net:51830", RelayRestarts: 2}
	var b bytes.Buffer
	st.WriteText(&b)
	if want := "the relay restarted 2 times"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
}
