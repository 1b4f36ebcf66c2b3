package dnsfwd_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/officeedge/appliance/integration/dnslab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
)

// With the default limits, a NAT'd Wi-Fi's burst from one address (dnsperf, 500 queries
// at once) is answered in full; a device flooding past its limit gets REFUSED (an answer,
// not a 5 s wait), said once in the log and then summarised, while another LAN device
// keeps getting answers.
func TestDNSFloodFromLAN(t *testing.T) {
	labtest.RequireRoot(t, "dnsperf")
	s := startSite(t)
	l := s.Lab
	eventually(t, 5*time.Second, "dig from the LAN", dnslab.FTTCAnswer, func() (string, error) {
		return dnslab.Dig(l, lab.HostPhone, lab.BoxLAN4, dnslab.Name)
	})

	// The burst: 500 queries, all outstanding at once.
	qf := filepath.Join(t.TempDir(), "queries")
	if err := os.WriteFile(qf, []byte(strings.Repeat(dnslab.Name+" A\n", 500)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := l.Run(lab.HostPhone, "dnsperf", "-s", lab.BoxLAN4, "-d", qf, "-n", "1", "-c", "1", "-q", "500", "-t", "5")
	if err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Queries completed:\s+(\d+)`).FindStringSubmatch(out); m == nil || m[1] != "500" ||
		!strings.Contains(out, "NOERROR 500") {
		t.Fatalf("a burst of 500 from one address was not answered in full:\n%s", out)
	}

	// The flood: the phone asks as fast as it can until the checks are done.
	conn, err := l.DialUDP(lab.HostPhone, "", lab.BoxLAN4+":53")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w, _ := new(dns.Msg).SetQuestion(dns.Fqdn(dnslab.Name), dns.TypeA).Pack()
		go func() { // answers are read and thrown away, so the phone's socket never fills
			buf := make([]byte, 1500)
			for {
				if _, err := conn.Read(buf); err != nil {
					return
				}
			}
		}()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			select {
			case <-stop:
				return
			default:
			}
			for range 50 {
				_, _ = conn.Write(w)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	status := func(host string) (string, error) { return dnslab.Status(l, host, lab.BoxLAN4, dnslab.Name) }
	eventually(t, 10*time.Second, "dig from the flooding phone", "REFUSED", func() (string, error) { return status(lab.HostPhone) })
	for i := range 10 {
		if got, err := dnslab.Dig(l, lab.HostPBX, lab.BoxLAN4, dnslab.Name); err != nil || got != dnslab.FTTCAnswer {
			t.Errorf("dig %d from the PBX during the phone's flood: %q %v", i+1, got, err)
		}
	}
	// The phone gets its share (about rate_limit answers a second) and REFUSED for the
	// rest: an answer either way, never silence.
	for i := range 5 {
		if st, err := status(lab.HostPhone); err != nil || (st != "REFUSED" && st != "NOERROR") {
			t.Errorf("dig %d from the flooding phone: %q %v, want REFUSED or its answer, never silence", i+1, st, err)
		}
	}
	if err := s.WaitOutput("client over the per-client limit", 5*time.Second); err != nil {
		t.Error(err)
	}
	if n := strings.Count(s.Log(), "client over the per-client limit"); n > 3 {
		t.Errorf("%d log lines for one flood in its first seconds, want one (and a summary every 10 s)", n)
	}
}
