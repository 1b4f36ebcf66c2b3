package wan_test

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/lab/labtest"
	"github.com/officeedge/appliance/wan"
)

// Media ports of this test's inbound flow: the PBX's is in the lab PBX's rtp_ports.
const (
	deadPBXPort   = 9520
	deadTrunkPort = 9521
)

// A flow that came in on the standby line is answered through it (reply routing); when that
// line dies while it is not the active one, the flow's conntrack entry is removed all the
// same, so the trunk's next packet, sent to the live line's address from the same port, is
// answered through the live line (before, the dead line's entry took the flow's reply tuple
// until it timed out, and the PBX's packets kept going into the dead line).
func TestStandbyLineDeathFlushesItsFlows(t *testing.T) {
	var echo *net.UDPConn
	s := startSite(t, sitelab.Config(`stability = "2s"`), func(s *sitelab.Site) (err error) {
		echo, err = s.Lab.ListenUDP(lab.HostPBX, lab.PBX4+":"+strconv.Itoa(deadPBXPort))
		return err
	})
	done := sitelab.ReadUDP(echo, 256, func(b []byte, from *net.UDPAddr) { _, _ = echo.WriteToUDP(b, from) })
	t.Cleanup(func() { echo.Close(); <-done })
	// Each ISP drops what leaves the box with another line's address: an answer that comes
	// back came through the line of its source.
	must(t, s.BCP38(wan.Primary, true))
	must(t, s.BCP38(wan.Backup, true))
	must(t, s.Force(wan.ForceBackup))
	waitActive(t, s, wan.Backup, 10*time.Second)

	// The trunk sends media to the office from one port, 50 packets a second, to the address
	// in to; answers counts what comes back by source.
	trunk, err := s.Lab.ListenUDP(lab.HostTrunk, lab.Trunk4+":"+strconv.Itoa(deadTrunkPort))
	must(t, err)
	var to atomic.Value
	to.Store(lab.BoxWAN4)
	var mu sync.Mutex
	answers := map[string]int{}
	read := sitelab.ReadUDP(trunk, 256, func(_ []byte, from *net.UDPAddr) {
		mu.Lock()
		answers[from.IP.String()]++
		mu.Unlock()
	})
	stop := sitelab.Every(20*time.Millisecond, 0, func() {
		_, _ = trunk.WriteToUDP([]byte("rtp-ish"), &net.UDPAddr{IP: net.ParseIP(to.Load().(string)), Port: deadPBXPort})
	})
	t.Cleanup(func() { stop(); trunk.Close(); <-read })
	answered := func(from string) int {
		mu.Lock()
		defer mu.Unlock()
		return answers[from]
	}
	entries := func() string {
		out, err := s.Lab.Run(lab.HostBox, "conntrack", "-L", "-p", "udp", "--dport", strconv.Itoa(deadPBXPort))
		must(t, err)
		return out
	}
	labtest.WaitFor(t, "answers from the FTTC address while LTE is active", 10*time.Second, func() bool { return answered(lab.BoxWAN4) > 10 })
	// Past the 2 s a UDP flow takes to become a lasting one: its entry would now outlive the
	// test.
	labtest.WaitFor(t, "the inbound flow's conntrack entry assured", 10*time.Second, func() bool {
		e := entries()
		return strings.Contains(e, "dst="+lab.BoxWAN4) && strings.Contains(e, "ASSURED")
	})

	t0 := time.Now()
	must(t, s.Silent(wan.Primary, true))
	st, err := s.WaitStatus(15*time.Second, "FTTC down", func(st wan.Status) bool {
		return sitelab.Uplink(st, wan.Primary).State == wan.Down
	})
	must(t, err)
	if st.Active != wan.Backup {
		t.Fatalf("active %s, want the backup all along", st.Active)
	}
	if _, ok := sitelab.Event(st, "wan.failover", t0); ok {
		t.Fatal("a failover while the dead line was the standby")
	}
	if e := entries(); strings.Contains(e, "dst="+lab.BoxWAN4) {
		t.Fatalf("the flow that came in on the dead FTTC line is still tracked:\n%s", e)
	}
	// The trunk turns to the office's other address, from the same port.
	to.Store(lab.BoxLTE4)
	deadline := time.Now().Add(5 * time.Second)
	for answered(lab.BoxLTE4) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the trunk's packets to the LTE address got no answer through LTE; conntrack:\n%s", entries())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, err := s.Spoofed(wan.Backup); err != nil || n != 0 {
		t.Fatalf("%d packets left through LTE with another line's address (%v)", n, err)
	}
}
