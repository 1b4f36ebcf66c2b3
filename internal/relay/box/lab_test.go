package box_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/relay/box"
)

var bin string // the appliance, built once

func TestMain(m *testing.M) { sitelab.Main(m, &bin) }

// The box's side against a real relay in the lab: the tunnel answers on both lines and the
// office's voice goes through it; a relay that stops answering sends voice direct with an
// alert, and it goes back through the relay, the alert cleared, when the relay answers again.
func TestRelayDirectAndBack(t *testing.T) {
	labtest.RequireRoot(t, "nft", "ss", "curl")
	r, err := sitelab.NewRelay(bin)
	if err != nil {
		t.Fatal(err)
	}
	// duplicate: both lines carry the tunnel, so both are probed at the full rate.
	s, err := sitelab.Start(lab.Unique(t), bin, t.TempDir(), r.BoxConfig(sitelab.Config(), true), r.Start)
	if err != nil {
		t.Fatalf("%v\nrelay log:\n%s", err, r.Log())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s\nrelay log:\n%s", s.Log(), r.Log())
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	wait := func(what string, ok func(box.Status) bool) box.Status {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := s.Client().RelayStatus()
			if err == nil && ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				var b bytes.Buffer
				st.WriteText(&b)
				t.Fatalf("relay status not %s within 20s (last error %v):\n%s", what, err, b.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	alert := func() (active bool) {
		as, err := s.Client().Alerts()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Key == box.AlertKey {
				return a.Active
			}
		}
		return false
	}
	metrics := func(want ...string) {
		t.Helper()
		m, err := s.Lab.Run(lab.HostPBX, "curl", "-sS", "-m", "5", "http://"+lab.BoxLAN4+"/metrics")
		if err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		for _, w := range want {
			if !strings.Contains(m, w) {
				t.Errorf("/metrics lacks %s", w)
			}
		}
	}
	voiceRule := func() bool {
		out, err := s.Lab.Run(lab.HostBox, "ip", "rule", "show")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(out, "fwmark 0x4000/0x4000 lookup 110")
	}

	st := wait("through the relay on both lines", func(st box.Status) bool {
		n := 0
		for _, l := range st.Lines {
			if l.Reachable {
				n++
			}
		}
		return st.Using == box.UsingRelay && n == 2 && !st.LastHandshake.IsZero()
	})
	if st.BoxPublicKey != r.BoxKey.PublicKey().String() || st.PublicAddress != lab.Relay4 {
		t.Errorf("status: box key %s (want %s), public address %s (want %s)", st.BoxPublicKey, r.BoxKey.PublicKey(), st.PublicAddress, lab.Relay4)
	}
	if !voiceRule() {
		t.Error("voice goes through the relay but the box has no ip rule for it")
	}
	// Blocks are exchanged with the relay as soon as it answers.
	wait("sharing blocks with the relay", func(st box.Status) bool { return !st.Sharing.Last.IsZero() && st.Sharing.Error == "" })
	// What a person runs on the box, and what Prometheus scrapes.
	text, err := s.Lab.Run(lab.HostBox, bin, "relay", "status", "--control", s.Control)
	if err != nil || !strings.Contains(text, "voice: RELAY") || !strings.Contains(text, "voice address "+lab.Relay4+": the trunk provider must allow it") {
		t.Errorf("appliance relay status: %v\n%s", err, text)
	}
	metrics(`appliance_relay_using{path="relay"} 1`, `appliance_relay_line_reachable{line="FTTC"} 1`, `appliance_relay_line_reachable{line="LTE"} 1`)

	if err := r.Unreachable(true); err != nil {
		t.Fatal(err)
	}
	wait("direct", func(st box.Status) bool { return st.Using == box.UsingDirect })
	labtest.WaitFor(t, "the relay's alert", 5*time.Second, alert)
	metrics(`appliance_relay_using{path="direct"} 1`, `appliance_relay_line_reachable{line="FTTC"} 0`)
	if voiceRule() {
		t.Error("voice goes direct but the ip rule into the tunnel is still there")
	}

	if err := r.Unreachable(false); err != nil {
		t.Fatal(err)
	}
	wait("back through the relay", func(st box.Status) bool { return st.Using == box.UsingRelay })
	if alert() {
		t.Error("the relay answers again but its alert is still active")
	}
	if !voiceRule() {
		t.Error("voice is back through the relay but the ip rule is not")
	}
}
