package calls_test

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/build"
	"github.com/officeedge/appliance/integration/callslab"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/internal/calls"
	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// TestCallQualityInTheLab runs the appliance in the lab and a real call through it: sipp
// calls extension 201 from the trunk, sipp answers as the PBX, RTP flows both ways at 50
// packets a second, and the trunk's ISP drops 10 % of the trunk's media at random. The
// control API and /metrics show the call with its loss (near 10 % to the PBX, none from it)
// and jitter. Then the ISP drops all of the trunk's media: the one-way-audio alert names
// the extension and the line. After the BYE the call is in the last day's list, one-way,
// with its worst minute.
func TestCallQualityInTheLab(t *testing.T) {
	labtest.RequireRoot(t, "nft", "sipp", "curl", "ss")
	dir := t.TempDir()
	bin, err := build.Daemon(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sitelab.Start(lab.Unique(t), bin, dir, sitelab.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	l := s.Lab
	drop := func(match string) {
		t.Helper()
		if err := callslab.DropTrunkMedia(l, match); err != nil {
			t.Fatal(err)
		}
	}
	drop("numgen random mod 100 < 10")

	call, err := callslab.Place(l, dir, callslab.Options{Ext: "201", Length: 13 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Close)

	status := func() calls.Status {
		t.Helper()
		var st calls.Status
		b, err := s.Client().Get(daemon.PathCallsStatus)
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil {
			t.Fatalf("calls status: %v", err)
		}
		return st
	}
	var c calls.Call
	labtest.WaitFor(t, "the call with 6 s of media both ways on the control API", 20*time.Second, func() bool {
		st := status()
		if len(st.Active) != 1 {
			return false
		}
		c = st.Active[0]
		return c.ToPBX.Expected >= 300 && c.FromPBX.Packets >= 300
	})
	t.Logf("to the PBX: %d packets, %.1f %% lost, jitter %.2f ms, MOS %.2f; from it: %d packets, %.1f %% lost, jitter %.2f ms, MOS %.2f",
		c.ToPBX.Packets, c.ToPBX.LossPct, c.ToPBX.JitterMs, c.ToPBX.MOS, c.FromPBX.Packets, c.FromPBX.LossPct, c.FromPBX.JitterMs, c.FromPBX.MOS)
	if c.Extension != "201" || c.Direction != "inbound" || c.Line != "FTTC" || c.Codec != "PCMU" || c.PBXMedia != lab.PBX4+":"+strconv.Itoa(sitelab.CallPBXPort) {
		t.Errorf("the call: %+v\n%s", c, call.Output())
	}
	// 10 % of 300 packets dropped at random: ±3.5 standard deviations.
	if c.ToPBX.LossPct < 4 || c.ToPBX.LossPct > 17 || c.FromPBX.LossPct > 1 {
		t.Errorf("loss to the PBX %.1f %% (10 %% dropped at the ISP), from the PBX %.1f %% (none dropped)", c.ToPBX.LossPct, c.FromPBX.LossPct)
	}
	if c.ToPBX.JitterMs <= 0 || c.ToPBX.JitterMs > 50 || c.MOS < 1 || c.MOS > 4.5 {
		t.Errorf("jitter %.2f ms, MOS %.2f", c.ToPBX.JitterMs, c.MOS)
	}
	if out, err := exec.Command(bin, "calls", "--control", s.Control).CombinedOutput(); err != nil ||
		!regexp.MustCompile(`(?m)^\S+\s+201\s+inbound\s+\+441632960001\s+FTTC\s+PCMU\s`).Match(out) {
		t.Errorf("appliance calls: %v\n%s", err, out)
	}
	m, err := l.Run(lab.HostPhone, "curl", "-sS", "-m", "5", "http://"+lab.BoxLAN4+"/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v\n%s", err, m)
	}
	id := regexp.QuoteMeta(c.ID)
	for _, re := range []string{`(?m)^appliance_calls_active 1$`,
		`appliance_call_loss_ratio\{call="` + id + `",direction="to_pbx",extension="201"\} 0\.[01]`,
		`appliance_call_jitter_ms\{call="` + id + `",direction="to_pbx",extension="201"\} \d`,
		`appliance_call_mos\{call="` + id + `",direction="from_pbx",extension="201"\} [34]\.`,
		`(?m)^appliance_calls_total 1$`} {
		if !regexp.MustCompile(re).MatchString(m) {
			t.Errorf("/metrics lacks %s", re)
		}
	}

	// The trunk's media is lost at its ISP: only the PBX's still flows.
	drop("")
	labtest.WaitFor(t, "the one-way-audio alert", 15*time.Second, func() bool {
		b, err := s.Client().Get(control.PathAlerts)
		if err != nil {
			return false
		}
		var as []alerts.Alert
		if json.Unmarshal(b, &as) != nil {
			return false
		}
		for _, a := range as {
			if a.Key == "calls.oneway/201" && a.Active {
				if !strings.Contains(a.Message, "extension 201") || !strings.Contains(a.Message, "over FTTC") {
					t.Errorf("the alert does not name the extension and the line: %q", a.Message)
				}
				return true
			}
		}
		return false
	})

	if err := call.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "the ended call in the last day's list", 10*time.Second, func() bool {
		st := status()
		return len(st.Active) == 0 && len(st.Recent) == 1
	})
	r := status().Recent[0]
	if !r.OneWay || r.Worst == nil || r.Worst.Direction != calls.DirIn || r.EndReason != "hung up by the far end" {
		t.Errorf("the ended call: %+v (worst minute %+v)", r, r.Worst)
	}
}
