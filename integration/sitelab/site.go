// Package sitelab runs the whole appliance in the namespace lab (the daemon built by integration/build, in the box, called on its control socket) and drives its uplinks, trunk and probe targets, for the lab tests and the benchmarks.
package sitelab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/control"
	"github.com/officeedge/appliance/internal/lab"
	"github.com/officeedge/appliance/wan"
)

// Probe targets of the lab: ICMP and TCP to Probe4 (a TCP refusal proves the path) and DNS to
// a responder this package runs on Probe4Alt, in another network.
var Targets = []string{"icmp:" + lab.Probe4, "tcp:" + lab.Probe4 + ":80", "dns:" + lab.Probe4Alt + ":53"}

// Uplink addresses of the box, by role.
var Addr = map[wan.Role]string{wan.Primary: lab.BoxWAN4, wan.Backup: lab.BoxLTE4}

// Site is a lab with the appliance daemon running in its box, a SIP trunk and a DNS probe
// target on the internet side.
type Site struct {
	Lab     *lab.Lab
	Control string
	Daemon  *exec.Cmd
	DNS     *DNSServer
	Trunk   *SIPServer
	dir     string
	args    []string // the daemon's command line, for Restart
}

// Config is the lab's appliance config with the trunk's OPTIONS check and [wan] settings
// (lines like `stability = "2s"`) added.
func Config(wanLines ...string) []byte { return ConfigTargets(Targets, wanLines...) }

// ConfigTargets is Config with other probe targets.
func ConfigTargets(targets []string, wanLines ...string) []byte {
	// The lab's own [wan] section gives way to the test's.
	base := wanSection.ReplaceAllString(string(lab.Config), "")
	c := strings.Replace(base, `networks = ["192.0.2.10", "2001:db8:1::10"]`,
		`networks = ["192.0.2.10", "2001:db8:1::10"]`+"\noptions = \""+lab.Trunk4+":5060\"", 1)
	q := make([]string, len(targets))
	for i, t := range targets {
		q[i] = `"` + t + `"`
	}
	c += "\n[wan]\ntargets = [" + strings.Join(q, ", ") + "]\n" + strings.Join(wanLines, "\n") + "\n"
	return []byte(c)
}

// Start builds a lab named prefix, starts the DNS target and the trunk, and runs bin (the
// appliance) in the box with config, waiting for "appliance running" and for both uplinks to
// be up.
func Start(prefix, bin, dir string, config []byte, setup ...func(*Site) error) (*Site, error) {
	l, err := lab.New(prefix)
	if err != nil {
		return nil, err
	}
	s := &Site{Lab: l, dir: dir, Control: filepath.Join(dir, "control.sock")}
	fail := func(err error) (*Site, error) { return nil, errors.Join(err, s.Close()) }
	if s.DNS, err = StartDNS(l, lab.HostNet, lab.Probe4Alt+":53"); err != nil {
		return fail(err)
	}
	if s.Trunk, err = StartSIPServer(l, lab.HostTrunk, lab.Trunk4+":5060"); err != nil {
		return fail(err)
	}
	for _, f := range setup {
		if err := f(s); err != nil {
			return fail(err)
		}
	}
	cfg := filepath.Join(dir, "appliance.toml")
	if err := os.WriteFile(cfg, config, 0o600); err != nil {
		return fail(err)
	}
	s.args = []string{bin, "run", "--config", cfg, "--state", s.StateDir(), "--control", s.Control}
	if err := s.startDaemon(); err != nil {
		return fail(err)
	}
	return s, nil
}

// StateDir is the daemon's state directory.
func (s *Site) StateDir() string { return filepath.Join(s.dir, "state") }

func (s *Site) startDaemon() error {
	var err error
	if s.Daemon, err = s.Lab.Start(lab.HostBox, s.args...); err != nil {
		return err
	}
	if err := s.WaitOutput("appliance running", 20*time.Second); err != nil {
		return err
	}
	_, err = s.WaitStatus(15*time.Second, "both uplinks up", func(st wan.Status) bool {
		return len(st.Uplinks) == 2 && st.Uplinks[0].State == wan.Up && st.Uplinks[1].State == wan.Up
	})
	return err
}

// Restart stops the daemon cleanly (SIGTERM) and starts it again with the same state.
func (s *Site) Restart() error {
	if err := s.Lab.Stop(s.Daemon); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return err
		}
	}
	return s.startDaemon()
}

// RemakeLink deletes the box's link to the ISP of uplink r and makes it again, as a USB
// modem does when it re-enumerates: the box sees the link go and come back with a new index
// and no addresses. The ISP side gets its gateway address (and the extra ones in gws) again.
func (s *Site) RemakeLink(r wan.Role, gws ...string) error {
	dev := map[wan.Role]string{wan.Primary: lab.BoxWANIf, wan.Backup: lab.BoxLTEIf}[r]
	if _, err := s.Lab.Run(lab.HostBox, "ip", "link", "del", dev); err != nil {
		return err
	}
	cmds := [][]string{
		{"ip", "link", "add", dev, "netns", s.Lab.NS(lab.HostBox), "type", "veth", "peer", "name", "cust0", "netns", s.Lab.NS(isp(r))},
		{"ip", "-n", s.Lab.NS(isp(r)), "link", "set", "cust0", "up"},
		{"ip", "-n", s.Lab.NS(lab.HostBox), "link", "set", dev, "up"},
	}
	for _, gw := range gws {
		cmds = append(cmds, []string{"ip", "-n", s.Lab.NS(isp(r)), "addr", "add", gw, "dev", "cust0"})
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("sitelab: %s: %w: %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// Close stops everything and removes the lab.
func (s *Site) Close() error {
	var errs []error
	if s.DNS != nil {
		s.DNS.Close()
	}
	if s.Trunk != nil {
		s.Trunk.Close()
	}
	if s.Lab != nil {
		errs = append(errs, s.Lab.Close())
	}
	return errors.Join(errs...)
}

// Log is what the daemon has written.
func (s *Site) Log() string { return s.Lab.Output(s.Daemon) }

// WaitOutput waits until the daemon's output contains want.
func (s *Site) WaitOutput(want string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !strings.Contains(s.Log(), want) {
		if time.Now().After(deadline) {
			return fmt.Errorf("sitelab: daemon did not say %q within %s; it said:\n%s", want, d, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Status asks the daemon over its control socket.
func (s *Site) Status() (wan.Status, error) {
	return s.Client().WANStatus()
}

// Client is the control API's client on the site's socket.
func (s *Site) Client() control.Client { return control.Client{Socket: s.Control} }

// WaitStatus polls the status until ok holds.
func (s *Site) WaitStatus(d time.Duration, what string, ok func(wan.Status) bool) (wan.Status, error) {
	deadline := time.Now().Add(d)
	for {
		st, err := s.Status()
		if err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			st.WriteText(&b)
			return st, fmt.Errorf("sitelab: not %s within %s (last error %v); status:\n%s\ndaemon log:\n%s", what, d, err, b.String(), tail(s.Log(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Uplink returns the status of one uplink.
func Uplink(st wan.Status, r wan.Role) wan.UplinkStatus {
	for _, u := range st.Uplinks {
		if u.Role == r {
			return u
		}
	}
	return wan.UplinkStatus{}
}

// Force sets the manual override through the control API.
func (s *Site) Force(m wan.Mode) error {
	_, err := s.Client().Force(control.ForceRequest{Mode: m})
	return err
}

// Event finds the first wan event of kind at or after t.
func Event(st wan.Status, kind string, after time.Time) (time.Time, bool) {
	for _, e := range st.Events {
		if e.Kind == kind && !e.Time.Before(after) {
			return e.Time, true
		}
	}
	return time.Time{}, false
}

var wanSection = regexp.MustCompile(`(?m)^\[wan\]\n(?:[^\[\n].*\n|\n)*`)
