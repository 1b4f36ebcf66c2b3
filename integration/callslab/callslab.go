// Package callslab places real SIP calls through the lab's box for package calls' lab test and the voice benchmark: sipp answers as the PBX, sipp calls from the trunk, and sitelab's media generator sends RTP both ways between the SDPs' addresses.
package callslab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/officeedge/appliance/integration/sitelab"
	"github.com/officeedge/appliance/internal/lab"
)

// Options of a call from the trunk to an extension of the PBX.
type Options struct {
	Ext       string        // the extension called (default "201")
	Caller    string        // the trunk's caller number (default "+441632960001")
	Length    time.Duration // from the answer to the trunk's BYE (default 20s)
	PBXPort   int           // the PBX's media port, in the lab's rtp_ports (default sitelab.CallPBXPort)
	TrunkPort int           // the trunk's media port (default sitelab.CallTrunkPort)
	SIPPort   int           // the trunk's SIP port (default 5071: sitelab's trunk server has 5060)
}

// Call is a call going on: both sipp ends and the media.
type Call struct {
	l        *lab.Lab
	uas, uac *exec.Cmd
	Media    *sitelab.Call
	Started  time.Time // when the trunk's INVITE went out
}

// Place starts a call from the trunk to the PBX through the box at its FTTC address, with
// scenario files written in dir. The media starts with the INVITE (the tracker ignores it
// until the PBX's answer names its port).
func Place(l *lab.Lab, dir string, o Options) (*Call, error) {
	if o.Ext == "" {
		o.Ext = "201"
	}
	if o.Caller == "" {
		o.Caller = "+441632960001"
	}
	if o.Length == 0 {
		o.Length = 20 * time.Second
	}
	if o.PBXPort == 0 {
		o.PBXPort = sitelab.CallPBXPort
	}
	if o.TrunkPort == 0 {
		o.TrunkPort = sitelab.CallTrunkPort
	}
	if o.SIPPort == 0 {
		o.SIPPort = 5071
	}
	r := strings.NewReplacer("EXT", o.Ext, "CALLER", o.Caller, "PBXPORT", strconv.Itoa(o.PBXPort),
		"TRUNKPORT", strconv.Itoa(o.TrunkPort), "HOLDMS", strconv.Itoa(int(o.Length/time.Millisecond)))
	uas, uac := filepath.Join(dir, "callslab-uas.xml"), filepath.Join(dir, "callslab-uac.xml")
	if err := os.WriteFile(uas, []byte(r.Replace(uasXML)), 0o644); err != nil {
		return nil, fmt.Errorf("callslab: %w", err)
	}
	if err := os.WriteFile(uac, []byte(r.Replace(uacXML)), 0o644); err != nil {
		return nil, fmt.Errorf("callslab: %w", err)
	}
	c := &Call{l: l}
	var err error
	// -nostdin: no terminal in a namespace; -m 1: one call, then sipp exits by itself.
	if c.uas, err = l.Start(lab.HostPBX, "sipp", "-sf", uas, "-i", lab.PBX4, "-p", "5060", "-m", "1", "-nostdin",
		"-timeout", strconv.Itoa(int(o.Length/time.Second)+60)+"s", "-trace_err", "-error_file", filepath.Join(dir, "callslab-uas.err")); err != nil {
		return nil, err
	}
	if err := waitUDP(l, lab.HostPBX, lab.PBX4+":5060"); err != nil {
		c.Close()
		return nil, err
	}
	if c.Media, err = sitelab.StartCall(l, sitelab.CallOptions{SDP: lab.BoxWAN4, PBXPort: o.PBXPort, TrunkPort: o.TrunkPort, Max: o.Length + 30*time.Second}); err != nil {
		c.Close()
		return nil, err
	}
	c.Started = time.Now()
	if c.uac, err = l.Start(lab.HostTrunk, "sipp", lab.BoxWAN4+":5060", "-sf", uac, "-i", lab.Trunk4, "-p", strconv.Itoa(o.SIPPort),
		"-m", "1", "-l", "1", "-nostdin", "-timeout", strconv.Itoa(int(o.Length/time.Second)+60)+"s",
		"-trace_err", "-error_file", filepath.Join(dir, "callslab-uac.err")); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// DropTrunkMedia makes the trunk's ISP side (the FTTC ISP, on the way to the box) drop the
// trunk's media: all of it with match "", or what match selects ("numgen random mod 100 <
// 10": 10 % at random). Each call replaces the last; Undrop removes it.
func DropTrunkMedia(l *lab.Lab, match string) error {
	cmd := l.Command(lab.HostFTTC, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader("table inet callsfault\ndelete table inet callsfault\ntable inet callsfault {\n chain media { type filter hook forward priority -10; " +
		"ip saddr " + lab.Trunk4 + " udp sport " + strconv.Itoa(sitelab.CallTrunkPort) + " " + match + " drop; }\n}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("callslab: nft in the ISP: %w: %s", err, out)
	}
	return nil
}

// Undrop lets the trunk's media through again.
func Undrop(l *lab.Lab) error {
	out, err := l.Run(lab.HostFTTC, "nft", "delete", "table", "inet", "callsfault")
	if err != nil {
		return fmt.Errorf("callslab: nft in the ISP: %w: %s", err, out)
	}
	return nil
}

// waitUDP waits until something listens on addr (UDP) in host.
func waitUDP(l *lab.Lab, host, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := l.Run(host, "ss", "-Hnul", "src", addr)
		if strings.TrimSpace(out) != "" {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("callslab: nothing listens on %s in %s", addr, host)
}

// Wait waits for both sipp ends to finish the call (the trunk's BYE answered) within d.
func (c *Call) Wait(d time.Duration) error {
	done := make(chan error, 2)
	go func() { done <- c.l.Wait(c.uac) }()
	go func() { done <- c.l.Wait(c.uas) }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var errs []error
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			errs = append(errs, err)
		case <-timer.C:
			return fmt.Errorf("callslab: the call did not end within %s", d)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("callslab: sipp: %w\n%s\n%s", err, c.l.Output(c.uac), c.l.Output(c.uas))
	}
	return nil
}

// Output is what both sipp ends printed (for a failing test).
func (c *Call) Output() string {
	var b strings.Builder
	if c.uac != nil {
		b.WriteString("trunk (uac):\n" + c.l.Output(c.uac))
	}
	if c.uas != nil {
		b.WriteString("\npbx (uas):\n" + c.l.Output(c.uas))
	}
	return b.String()
}

// Close stops the media and both sipp ends (by their PIDs).
func (c *Call) Close() {
	if c.Media != nil {
		c.Media.Stop()
	}
	for _, p := range []*exec.Cmd{c.uac, c.uas} {
		if p != nil {
			_ = c.l.Stop(p)
		}
	}
}

// The PBX answers with its media at PBXPORT, then waits for the BYE.
var uasXML = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="lab PBX answers">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[

` + pbxReply("180 Ringing") + `Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[

` + pbxReply("200 OK") + `Content-Type: application/sdp
Content-Length: [len]

` + sdp("pbx", "PBXPORT") + `
]]></send>
  <recv request="ACK" optional="true" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
`

// The trunk calls EXT from CALLER with its media at TRUNKPORT, holds HOLDMS and hangs up.
var uacXML = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="lab trunk calls">
  <send retrans="500"><![CDATA[

` + trunkRequest("INVITE", 1, "") + `Content-Type: application/sdp
Content-Length: [len]

` + sdp("trunk", "TRUNKPORT") + `
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[

` + trunkRequest("ACK", 1, "[peer_tag_param]") + `Content-Length: 0

]]></send>
  <pause milliseconds="HOLDMS"/>
  <send retrans="500"><![CDATA[

` + trunkRequest("BYE", 2, "[peer_tag_param]") + `Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
`

// pbxReply is the PBX's answer to the INVITE, up to its body's headers.
func pbxReply(status string) string {
	return "SIP/2.0 " + status + `
[last_Via:]
[last_From:]
[last_To:];tag=[pid]pbx[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:EXT@[local_ip]:[local_port]>
`
}

// trunkRequest is a request of the trunk's call, up to its body's headers; toTag follows To.
func trunkRequest(method string, cseq int, toTag string) string {
	return method + ` sip:EXT@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:CALLER@[local_ip]:[local_port]>;tag=[pid]trunk[call_number]
To: <sip:EXT@[remote_ip]:[remote_port]>` + toTag + `
Call-ID: [call_id]
CSeq: ` + strconv.Itoa(cseq) + " " + method + `
Contact: <sip:CALLER@[local_ip]:[local_port]>
Max-Forwards: 70
`
}

// sdp is either end's offer or answer: PCMU and DTMF events at port.
func sdp(origin, port string) string {
	return `v=0
o=` + origin + ` 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio ` + port + ` RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv
`
}
