package shaper_test

import (
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/shaperlab"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/daemon"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/internal/shaper"
)

var bin string

func TestMain(m *testing.M) { sitelab.Main(m, &bin) }

// The appliance itself with `upload = "auto"` on the fixed line: its shaper part makes the
// tree, follows a 4 Mbit/s line down from the configured top with wan's own probes, shows
// in /metrics, `appliance wan speedtest` measures the line, and the tree goes with the daemon.
func TestDaemonShapes(t *testing.T) {
	t.Parallel() // namespaces, interfaces and ports of its own
	labtest.RequireRoot(t, "iperf3", "tc", "ss", "curl")
	dir := t.TempDir()
	speed := net.JoinHostPort(lab.Remote4, "41030")
	cfg := strings.Replace(string(sitelab.Config()), "[uplink.primary]\n",
		"[uplink.primary]\nupload = \"auto\"\nupload_min = \"1Mbit\"\nupload_max = \"10Mbit\"\n", 1) +
		"\n[voice]\nspeedtest_url = \"http://" + speed + "/\"\nspeedtest_duration = \"2s\"\n"
	var srv *http.Server
	s, err := sitelab.Start(lab.Unique(t), bin, dir, []byte(cfg), func(s *sitelab.Site) error {
		ln, err := s.Lab.ListenTCP(lab.HostRemote, speed)
		if err != nil {
			return err
		}
		srv = &http.Server{Handler: shaperlab.SpeedServer(3 * time.Second), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		return (&shaperlab.Site{L: s.Lab}).Bottleneck("4mbit")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer srv.Close()
	l := s.Lab
	qdiscs := func() string {
		out, err := l.Run(lab.HostBox, "tc", "qdisc", "show", "dev", lab.BoxWANIf)
		if err != nil {
			t.Fatalf("tc: %v: %s", err, out)
		}
		return out
	}
	labtest.WaitFor(t, "the daemon's tree on wan0", 10*time.Second, func() bool { return strings.Contains(qdiscs(), "qdisc htb 1: root") })
	status := func() shaper.Status {
		var st []shaper.Status
		if err := s.Client().GetJSON(daemon.PathShaperStatus, &st); err != nil || len(st) != 1 {
			t.Fatalf("shaper status: %v %+v", err, st)
		}
		return st[0]
	}
	if st := status(); !st.Applied || !st.Auto || st.Line != 10_000_000 {
		t.Errorf("at start: %+v, want applied at the top of the auto range", st)
	}

	site := &shaperlab.Site{L: l}
	u, err := site.StartUpload(41031, 4, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	labtest.WaitFor(t, "autorate down to the 4 Mbit/s line from wan's probes", 25*time.Second, func() bool { return status().Line < 5_000_000 })
	u.Stop()

	m, err := l.Run(lab.HostPhone, "curl", "-sS", "-m", "5", "http://"+lab.BoxLAN4+"/metrics")
	if err != nil {
		t.Fatalf("metrics: %v: %s", err, m)
	}
	for _, re := range []string{`appliance_shaper_rate_bits\{interface="wan0",uplink="FTTC"\} \d`, `appliance_shaper_class_bytes_total\{class="voice",uplink="FTTC"\}`,
		`appliance_shaper_class_drops_total\{class="bulk",uplink="FTTC"\}`, `appliance_shaper_applied\{interface="wan0",uplink="FTTC"\} 1`} {
		if !regexp.MustCompile(re).MatchString(m) {
			t.Errorf("/metrics lacks %s", re)
		}
	}

	out, err := exec.Command(bin, "wan", "speedtest", "primary", "--json", "--control", s.Control).CombinedOutput()
	if err != nil {
		t.Fatalf("appliance wan speedtest: %v: %s", err, out)
	}
	var r shaper.SpeedResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("speedtest answer %q: %v", out, err)
	}
	if r.Interface != lab.BoxWANIf || r.Upload < 2e6 || r.Upload > 6e6 || r.Download <= 0 {
		t.Errorf("speedtest of the 4 Mbit/s line: %+v", r)
	}
	if text, err := exec.Command(bin, "wan", "speedtest", "FTTC", "--control", s.Control).CombinedOutput(); err != nil || !strings.Contains(string(text), "upload = \"") {
		t.Errorf("speedtest text: %v: %s", err, text)
	}

	if err := l.Stop(s.Daemon); err != nil {
		t.Logf("daemon stop: %v", err)
	}
	if q := qdiscs(); strings.Contains(q, "htb") {
		t.Errorf("the tree outlived the daemon:\n%s", q)
	}
}
