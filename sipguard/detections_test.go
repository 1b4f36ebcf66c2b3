package sipguard

import (
	"testing"
	"time"
)

// Each detector counts its own findings, by name.
func TestDetectionsCounted(t *testing.T) {
	fw := newFake()
	g, _, _ := newTestGuard(t, fw, t.TempDir())
	g.Handle(time.Now(), udp(attacker, pbx, req("OPTIONS", "100", "sipvicious", "friendly-scanner", "s1", 1, "")))
	waitUntil(t, "block", func() bool { _, ok := fw.get("192.0.2.66/32"); return ok })
	st, _ := g.Snapshot()
	by := st.ByDetector()
	if by["scanner"] != 1 || by["brute-force"] != 0 || st.Findings != 1 {
		t.Errorf("detections %v, findings %d; want one scanner", by, st.Findings)
	}
	if _, ok := by["hold"]; ok {
		t.Error("holds are not a detector's findings")
	}
}
