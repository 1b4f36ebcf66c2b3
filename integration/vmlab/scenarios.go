package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/officeedge/appliance/integration/callslab"
	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/internal/web"
	"github.com/officeedge/appliance/wan"
)

// Attacker2 is a second address of the attacker, for the firewall's probes: the scanner
// scenario needs lab.Attacker4 unblocked until svmap runs from it.
const Attacker2 = "192.0.2.67"

// boot waits for the box's status page on the LAN with the firewall loaded and FTTC active.
func (r *runner) boot() result {
	s, ok, errMsg := r.waitStatus(r.timeout, func(s Status) bool { return s.Firewall.Loaded && s.Active == "FTTC" })
	if !ok {
		return fail("status page on %s: %s; firewall loaded %v (%s), active %q", lab.BoxLAN4, errMsg, s.Firewall.Loaded, s.Firewall.Error, s.Active)
	}
	missing := "none"
	if m := s.kernelMissing(); len(m) > 0 {
		missing = strings.Join(m, ", ")
	}
	return pass("version %s, site %q, firewall loaded, FTTC active; kernel lacks: %s", s.Version, s.Site, missing)
}

// firewall: the uplinks answer the attacker nothing; the trunk's call reaches the PBX.
func (r *runner) firewall() result {
	var bad, seen []string
	// The trunk calls the PBX through the box's FTTC address: sipp at both ends.
	r.pbxSIP(false)
	call, err := callslab.Place(r.l, r.work, callslab.Options{Length: 2 * time.Second})
	if err != nil {
		bad = append(bad, "trunk call: "+err.Error())
	} else {
		if err := call.Wait(r.timeout); err != nil {
			bad = append(bad, "trunk call to the PBX via "+lab.BoxWAN4+" failed: "+lastLines(err.Error(), 3))
		} else {
			seen = append(seen, "trunk's INVITE via "+lab.BoxWAN4+" answered by the PBX's sipp, call completed")
		}
		call.Close()
	}
	if _, err := r.l.Run(lab.HostAttacker, "ip", "addr", "replace", Attacker2+"/24", "dev", "eth0"); err != nil {
		return fail("%v", err)
	}
	r.pbxSIP(true) // so a SIP request let through would be answered
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, addr := range []string{lab.BoxWAN4, lab.BoxLTE4} {
		for _, port := range []string{"22", "80", "443", "8080"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got := r.tcpFrom(lab.HostAttacker, Attacker2, net.JoinHostPort(addr, port))
				mu.Lock()
				defer mu.Unlock()
				if got != "silent" {
					bad = append(bad, "tcp "+addr+":"+port+" "+got)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := r.sipFrom(lab.HostAttacker, fmt.Sprintf("%s:%d", Attacker2, 5090+i), addr+":5060", 6*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if got != "" {
				bad = append(bad, "SIP to "+addr+":5060 "+got)
			}
		}()
	}
	wg.Wait()
	// gokrazy's UI does answer on the LAN: its silence on the uplinks is the firewall's.
	if resp, _, err := get(r.l, lab.HostPhone, "http://"+lab.BoxLAN4+":8080/"); err != nil {
		bad = append(bad, "gokrazy's UI does not answer on the LAN either: "+err.Error())
	} else {
		seen = append(seen, fmt.Sprintf("gokrazy's UI answers on the LAN (HTTP %d)", resp.StatusCode))
	}
	if len(bad) > 0 {
		return fail("%s", strings.Join(append(bad, seen...), "; "))
	}
	return pass("%s; from the attacker: tcp 22/80/443/8080 and SIP 5060 on %s and %s unanswered", strings.Join(seen, "; "), lab.BoxWAN4, lab.BoxLTE4)
}

// carrierFailover: FTTC's carrier goes (the VM's NIC link off), the office's traffic and
// the PBX's SIP go via LTE; the carrier comes back, so does FTTC.
func (r *runner) carrierFailover() result {
	return r.failover("carrier off", func(on bool) error { return r.vm.SetLink("fttc", !on) })
}

// silentFailover: the FTTC ISP drops everything (the link stays up): the box's probes see
// it and move to LTE; then back.
func (r *runner) silentFailover() result {
	s := &sitelab.Site{Lab: r.l}
	return r.failover("silent", func(on bool) error { return s.Silent(wan.Primary, on) })
}

// failover applies fault, checks the office on LTE, undoes it, checks FTTC again.
func (r *runner) failover(name string, fault func(on bool) error) result {
	if _, ok, msg := r.waitStatus(r.timeout, func(s Status) bool { return s.Active == "FTTC" }); !ok {
		return fail("FTTC not active before the fault: %s", msg)
	}
	r.pbxSIP(false) // the pinger takes the PBX's port 5060
	p, err := sitelab.StartSIPPinger(r.l, 500*time.Millisecond, 3*r.timeout+time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer p.Close()
	t0 := time.Now()
	if !r.until(r.timeout, func() bool { _, ok := p.FirstFrom(lab.BoxWAN4, t0); return ok }) {
		return fail("the PBX's OPTIONS to the trunk got no answer via FTTC (%s) before the fault", lab.BoxWAN4)
	}
	t1 := time.Now()
	if err := fault(true); err != nil {
		return fail("%v", err)
	}
	undone := false
	defer func() {
		if !undone {
			_ = fault(false)
		}
	}()
	var seen []string
	if _, ok, msg := r.waitStatus(r.timeout, func(s Status) bool { return s.Active == "LTE" }); !ok {
		return fail("FTTC %s: the box did not move to LTE: %s", name, msg)
	}
	seen = append(seen, "FTTC "+name+": LTE active")
	if !r.until(r.timeout, func() bool { _, ok := p.FirstFrom(lab.BoxLTE4, t1); return ok }) {
		return fail("%s; the PBX's OPTIONS got no answer via LTE (%s)", strings.Join(seen, ", "), lab.BoxLTE4)
	}
	seen = append(seen, "PBX's OPTIONS answered via "+lab.BoxLTE4)
	if !r.until(r.timeout, func() bool { return r.ping(lab.HostPhone, lab.Trunk4) }) {
		return fail("%s; the phone does not reach %s", strings.Join(seen, ", "), lab.Trunk4)
	}
	seen = append(seen, "phone reaches "+lab.Trunk4)
	undone = true
	t2 := time.Now()
	if err := fault(false); err != nil {
		return fail("%s; undo: %v", strings.Join(seen, ", "), err)
	}
	if _, ok, msg := r.waitStatus(r.timeout, func(s Status) bool { return s.Active == "FTTC" }); !ok {
		return fail("%s; FTTC back: the box did not return to FTTC: %s", strings.Join(seen, ", "), msg)
	}
	if !r.until(r.timeout, func() bool { _, ok := p.FirstFrom(lab.BoxWAN4, t2); return ok }) {
		return fail("%s; FTTC back and active, but the PBX's OPTIONS got no answer via %s", strings.Join(seen, ", "), lab.BoxWAN4)
	}
	seen = append(seen, "FTTC back: FTTC active, OPTIONS answered via "+lab.BoxWAN4)
	return pass("%s", strings.Join(seen, ", "))
}

// scanner: svmap and svwar from the attacker at the box's SIP port; sipguard blocks the
// attacker in the kernel and the status page shows it.
//
// With SIP open only to the trunk and the remote office (the lab's config) the firewall
// drops a scanner before sipguard, which watches the SIP that reaches the PBX, sees it; so
// this runs on openImg, the lab's config with SIP open to anywhere, booted in the box's
// place (when given).
func (r *runner) scanner(openImg string) result {
	if openImg != "" {
		r.vm.Stop()
		if err := Unwire(r.l); err != nil {
			return fail("%v", err)
		}
		var err error
		if r.vm, err = StartVM(r.l, openImg, r.efi, r.work, "open"); err != nil {
			return fail("%v", err)
		}
		if _, ok, msg := r.waitStatus(r.timeout, func(s Status) bool { return s.Firewall.Loaded }); !ok {
			return fail("the image with SIP open to anywhere did not come up: %s", msg)
		}
	}
	r.pbxSIP(true)
	if s, err := status(r.l); err == nil {
		if b, _ := s.blocked(lab.Attacker4); b {
			return fail("%s blocked before any scan", lab.Attacker4)
		}
	}
	out, _ := r.l.Command(lab.HostAttacker, "timeout", "-s", "KILL", "20", "svmap", "-b", lab.Attacker4, "-x", lab.Attacker4,
		"-p", "5060", lab.BoxWAN4).CombinedOutput()
	// sipguard blocks on the first packet: a minute is plenty even under emulation.
	s, ok, msg := r.waitStatus(min(r.timeout, time.Minute), func(s Status) bool { b, _ := s.blocked(lab.Attacker4); return b })
	if !ok {
		return fail("no sipguard block of %s on the status page after svmap (%s; sipguard %s; blocklist %s; svmap said: %s)",
			lab.Attacker4, orNone(msg), s.guard(), s.entries(), lastLines(string(out), 2))
	}
	_, before := s.blocked(lab.Attacker4)
	seen := []string{"svmap: " + lab.Attacker4 + " blocked by sipguard"}
	// What the attacker sends next: svwar, then plain OPTIONS; nothing answers.
	_, _ = r.l.Command(lab.HostAttacker, "timeout", "-s", "KILL", "15", "svwar", "-b", lab.Attacker4, "-x", lab.Attacker4,
		"-e", "1000-1010", "-m", "REGISTER", lab.BoxWAN4).CombinedOutput()
	if got := r.sipFrom(lab.HostAttacker, lab.Attacker4+":5097", lab.BoxWAN4+":5060", 6*time.Second); got != "" {
		return fail("%s; but the attacker's next OPTIONS %s", strings.Join(seen, ", "), got)
	}
	seen = append(seen, "svwar and OPTIONS after it unanswered")
	if before != nil {
		s, err := status(r.l)
		if err != nil {
			return fail("%s; status: %v", strings.Join(seen, ", "), err)
		}
		_, after := s.blocked(lab.Attacker4)
		if after == nil || *after <= *before {
			return fail("%s; but the kernel's drop counter for %s did not grow (%d before)", strings.Join(seen, ", "), lab.Attacker4, *before)
		}
		seen = append(seen, fmt.Sprintf("kernel dropped %d packets from it", *after))
	}
	return pass("%s", strings.Join(seen, ", "))
}

// replyRouting: the trunk's OPTIONS to the box's LTE address while FTTC is active is answered
// from the LTE address, via LTE. The FTTC ISP drops (and counts) what leaves the box with
// another line's address, as ISPs filtering spoofed sources do: a reply routed by the
// default route would die there.
func (r *runner) replyRouting() result {
	if _, ok, msg := r.waitStatus(r.timeout, func(s Status) bool { return s.Active == "FTTC" }); !ok {
		return fail("FTTC not active: %s", msg)
	}
	r.pbxSIP(true)
	site := &sitelab.Site{Lab: r.l}
	if err := site.BCP38(wan.Primary, true); err != nil {
		return fail("%v", err)
	}
	defer func() { _ = site.BCP38(wan.Primary, false) }()
	got := r.sipFrom(lab.HostTrunk, lab.Trunk4+":5073", lab.BoxLTE4+":5060", time.Minute)
	spoofed, err := site.Spoofed(wan.Primary)
	if err != nil {
		return fail("%v", err)
	}
	// The FTTC ISP lets nothing from the LTE address through: an answer from it came via LTE.
	seen := fmt.Sprintf("trunk's OPTIONS to %s:5060: %s; FTTC ISP dropped %d packets with another line's address as source", lab.BoxLTE4, orNone(got), spoofed)
	if got != "answered from "+lab.BoxLTE4+":5060" || spoofed != 0 {
		return fail("%s", seen)
	}
	return pass("%s", seen)
}

// httpsPage: the page over HTTPS from the phone, with the certificate the status page names.
func (r *runner) httpsPage() result {
	resp, body, err := get(r.l, lab.HostPhone, "https://"+lab.BoxLAN4+"/")
	if err != nil {
		return fail("https://%s/ from the phone: %v", lab.BoxLAN4, err)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return fail("no certificate")
	}
	fp := web.Fingerprint(resp.TLS.PeerCertificates[0].Raw)
	_, sess, err := get(r.l, lab.HostPhone, "https://"+lab.BoxLAN4+"/api/session")
	if err != nil {
		return fail("https://%s/api/session: %v", lab.BoxLAN4, err)
	}
	s, err := status(r.l)
	if err != nil {
		return fail("%v", err)
	}
	want := ""
	if s.TLS != nil {
		want = s.TLS.Fingerprint
	}
	var session struct {
		LoggedIn *bool `json:"logged_in"`
	}
	_ = json.Unmarshal(sess, &session)
	loggedOut := session.LoggedIn != nil && !*session.LoggedIn
	seen := fmt.Sprintf("HTTP %d, %d bytes of page, session: logged out %v, certificate %s (status page: %s)", resp.StatusCode, len(body), loggedOut, short(fp), short(want))
	if resp.StatusCode != 200 || !strings.Contains(strings.ToLower(string(body)), "<html") || !loggedOut || fp != want {
		return fail("%s", seen)
	}
	return pass("%s", seen)
}

// pbxSIP starts or stops the PBX's SIP answerer on its port 5060 (sitelab's server: 200 OK to
// every request). The failover pinger and the sipp call need that port themselves.
func (r *runner) pbxSIP(on bool) {
	if !on {
		if r.pbx != nil {
			r.pbx.Close()
			r.pbx = nil
		}
		return
	}
	if r.pbx == nil {
		if srv, err := sitelab.StartSIPServer(r.l, lab.HostPBX, lab.PBX4+":5060"); err == nil {
			r.pbx = srv
		}
	}
}

// tcpFrom connects from laddr in host to raddr and says what happened: open, refused or
// silent (no answer at all within a few seconds).
func (r *runner) tcpFrom(host, laddr, raddr string) string {
	var err error
	derr := r.l.Do(host, func() error {
		d := net.Dialer{Timeout: 4 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(laddr)}}
		var c net.Conn
		if c, err = d.Dial("tcp", raddr); err == nil {
			c.Close()
		}
		return nil
	})
	switch {
	case derr != nil:
		return "error: " + derr.Error()
	case err == nil:
		return "open"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable (ICMP)"
	default:
		return "silent"
	}
}

// sipFrom sends SIP OPTIONS from laddr in host to raddr every 2 s for at most d and says
// what came back: "" for nothing, "answered from ADDR" (the socket is connected: only raddr's
// answers arrive), or the ICMP error seen.
func (r *runner) sipFrom(host, laddr, raddr string, d time.Duration) string {
	c, err := r.l.DialUDP(host, laddr, raddr)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(d)
	for i := 1; time.Now().Before(deadline) && r.ctx.Err() == nil; i++ {
		if _, err := c.Write(options(laddr, raddr, i)); err != nil {
			return "error: " + err.Error()
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		switch {
		case err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0"):
			return "answered from " + from.String()
		case err == nil:
			continue
		case errors.Is(err, syscall.ECONNREFUSED):
			return "refused (ICMP port unreachable)"
		}
	}
	return ""
}

// options is a SIP OPTIONS request from laddr to raddr.
func options(laddr, raddr string, n int) []byte {
	host, _, _ := net.SplitHostPort(laddr)
	return fmt.Appendf(nil, "OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-vml%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:vmlab@%s>;tag=vml%d\r\nTo: <sip:%s>\r\nCall-ID: vmlab-%d@%s\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n",
		raddr, laddr, n, host, n, raddr, n, host, n)
}

// ping says whether one ping from host to addr is answered.
func (r *runner) ping(host, addr string) bool {
	_, err := r.l.Run(host, "ping", "-c", "1", "-W", "2", addr)
	return err == nil
}

// until polls cond every 200 ms for at most d (or until qemu exits or the run is stopped).
func (r *runner) until(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if r.vm.Exited() || time.Now().After(deadline) || r.ctx.Err() != nil {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lastLines is the last n lines of s, on one line.
func lastLines(s string, n int) string { return strings.Join(tail(s, n), " | ") }

func tail(s string, n int) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// short is a fingerprint's first pairs, enough to compare by eye.
func short(fp string) string {
	if len(fp) > 14 {
		return fp[:14] + "..."
	}
	if fp == "" {
		return "none"
	}
	return fp
}
