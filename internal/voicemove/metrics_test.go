package voicemove

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// appliance_voice_moved is 1 for the line voice left, 0 for the others, and absent while the
// move is off.
func TestCollector(t *testing.T) {
	st, on := Status{Moved: true, From: "FTTC", To: "LTE", Since: time.Now(), Why: "a flood"}, true
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector(func() (Status, bool) { return st, on }, func() []string { return []string{"FTTC", "LTE"} }))
	gather := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				got[mf.GetName()+"/"+m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
		return got
	}
	if got := gather(); len(got) != 2 || got["appliance_voice_moved/FTTC"] != 1 || got["appliance_voice_moved/LTE"] != 0 {
		t.Fatalf("metrics %v, want FTTC 1 and LTE 0", got)
	}
	var b bytes.Buffer
	st.WriteText(&b)
	if !strings.Contains(b.String(), "voice MOVED from FTTC to LTE (direct)") {
		t.Fatalf("status text:\n%s", b.String())
	}
	on = false
	if got := gather(); len(got) != 0 {
		t.Fatalf("metrics %v while the move is off", got)
	}
}
