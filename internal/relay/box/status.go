package box

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/relay"
	"github.com/officeedge/appliance/internal/relay/wire"
)

// Status is the relay as `appliance relay status`, the page and /metrics show it.
type Status struct {
	Interface string `json:"interface"`
	// PublicAddress is the office's voice address at the relay: what the trunk provider must
	// allow and the PBX advertises.
	PublicAddress   string `json:"public_address"`
	Endpoint        string `json:"endpoint"`         // as configured
	EndpointAddress string `json:"endpoint_address"` // resolved ("" before the first lookup)
	TunnelAddress   string `json:"tunnel_address"`   // the box's
	RelayTunnel     string `json:"relay_tunnel"`     // the relay's (block sharing)
	BoxPublicKey    string `json:"box_public_key"`   // for the relay's [office.NAME] public_key
	RelayPublicKey  string `json:"relay_public_key"`
	// Using is where the office's voice goes: "relay", or "direct" while the relay answers
	// on no line (and before it first does).
	Using string    `json:"using"`
	Since time.Time `json:"since"`
	// Line is the uplink carrying the tunnel; VoiceMoved says the voice-move part chose it.
	Line       string `json:"line"`
	VoiceMoved bool   `json:"voice_moved,omitempty"`
	// Lines are the tunnel over each uplink: probes answered, round trip, loss, bytes.
	Lines         []wire.LineStats `json:"lines"`
	LastHandshake time.Time        `json:"last_handshake,omitzero"`
	RxBytes       int64            `json:"rx_bytes"` // since the tunnel came up or the relay last restarted
	TxBytes       int64            `json:"tx_bytes"`
	// RelayRestarts counts the relay's restarts the box noticed (a new epoch in its probe
	// replies) and handshook again for at once, since the part started.
	RelayRestarts int  `json:"relay_restarts"`
	Duplicate     bool `json:"duplicate"`
	AllTraffic    bool `json:"all_traffic"`
	// DuplicateBytes are the extra copies sent since the start (counted by the modem's data
	// budget like any byte on its interface); DuplicateBytesPerCallMinute is their rate per
	// minute of voice through the tunnel (0 until a minute of it was seen).
	DuplicateBytes              uint64  `json:"duplicate_bytes"`
	DuplicateBytesPerCallMinute float64 `json:"duplicate_bytes_per_call_minute"`
	Sharing                     Sharing `json:"sharing"`
	Error                       string  `json:"error,omitempty"`
}

// Sharing is the block exchange with the relay.
type Sharing struct {
	Last   time.Time `json:"last,omitzero"`
	Pushed int       `json:"pushed"` // the box's blocks sent at the last exchange
	Taken  int       `json:"taken"`  // the relay's blocks in force on the box
	Error  string    `json:"error,omitempty"`
}

// Status reads the tunnel now.
func (p *Part) Status() Status {
	c := p.config()
	r := c.Relay
	st := Status{Interface: r.Interface, PublicAddress: r.PublicAddress, Endpoint: r.Endpoint,
		TunnelAddress: r.BoxAddr().String(), RelayTunnel: r.RelayAddr().String(), BoxPublicKey: p.key.PublicKey().String(),
		RelayPublicKey: p.relay.String(), Duplicate: r.Duplicate, AllTraffic: r.AllTraffic, VoiceMoved: p.voiceLine.Load() > 0}
	if ep := p.endpoint(); ep.IsValid() {
		st.EndpointAddress = ep.String()
	}
	p.mu.Lock()
	b := p.bind
	st.Using, st.Since, st.Error = p.using, p.since, p.errText
	if ups := c.Uplink.All(); p.line >= 0 && p.line < len(ups) {
		st.Line = ups[p.line].Name
	}
	st.DuplicateBytes, st.DuplicateBytesPerCallMinute = p.dup.total, p.dup.perMinute()
	st.Sharing = p.share
	st.RelayRestarts = p.relayRestarts
	p.mu.Unlock()
	if b == nil {
		if st.Error == "" {
			st.Error = "the tunnel is not up"
		}
		return st
	}
	st.Lines = b.Stats()
	pr := p.readPeer()
	st.LastHandshake, st.RxBytes, st.TxBytes = pr.handshake, pr.rx, pr.tx
	return st
}

// dupMeter counts the duplicate copies and the time voice went through the tunnel.
type dupMeter struct {
	at         time.Time
	tx         int64  // the tunnel's bytes out at the last sample
	total      uint64 // duplicate bytes at the last sample
	voiceDup   uint64 // duplicate bytes sent while voice went through the tunnel
	voiceNanos int64
}

// voiceBytesPerSecond is the tunnel's traffic taken for a call: a G.711 or G.722 call is
// about 10 kB/s each way; keepalives and probes are a few bytes a second.
const voiceBytesPerSecond = 4000

func (d dupMeter) perMinute() float64 {
	if d.voiceNanos < int64(time.Minute) {
		return 0
	}
	return float64(d.voiceDup) / (float64(d.voiceNanos) / float64(time.Minute))
}

// sampleDuplicate adds the duplicate bytes sent since the last sample, at most once a second.
func (p *Part) sampleDuplicate(b *wire.BoxBind) {
	now := time.Now()
	p.mu.Lock()
	due := now.Sub(p.dup.at) >= time.Second
	p.mu.Unlock()
	if !due {
		return
	}
	var total uint64
	for _, l := range b.Stats() {
		total += l.DuplicateBytesOut
	}
	tx := p.readPeer().tx
	p.mu.Lock()
	defer p.mu.Unlock()
	d := &p.dup
	if !d.at.IsZero() {
		dt := now.Sub(d.at)
		if float64(tx-d.tx)/dt.Seconds() >= voiceBytesPerSecond {
			d.voiceNanos += int64(dt)
			d.voiceDup += total - d.total
		}
	}
	d.at, d.tx, d.total = now, tx, total
}

// WriteText prints the status for people.
func (st Status) WriteText(w io.Writer) {
	fmt.Fprintf(w, "voice: %s", strings.ToUpper(st.Using))
	if !st.Since.IsZero() {
		fmt.Fprintf(w, " for %s", time.Since(st.Since).Round(time.Second))
	}
	if st.Using == UsingDirect {
		fmt.Fprint(w, " (the relay answers on no line: calls go from the lines' own addresses)")
	}
	fmt.Fprintf(w, "\nrelay %s (%s), the office's voice address %s: the trunk provider must allow it\n",
		st.Endpoint, relay.OrDash(st.EndpointAddress), st.PublicAddress)
	fmt.Fprintf(w, "tunnel %s: box %s, relay %s; box public key %s\n", st.Interface, st.TunnelAddress, st.RelayTunnel, st.BoxPublicKey)
	hs := "never"
	if !st.LastHandshake.IsZero() {
		hs = time.Since(st.LastHandshake).Round(time.Second).String() + " ago"
	}
	line := relay.OrDash(st.Line)
	if st.VoiceMoved {
		line += " (voice moved off a flooded line)"
	}
	fmt.Fprintf(w, "carried by %s; handshake %s; %d bytes in, %d out; duplicate %v", line, hs, st.RxBytes, st.TxBytes, st.Duplicate)
	if st.Duplicate {
		fmt.Fprintf(w, " (%d extra bytes, %.0f per call-minute)", st.DuplicateBytes, st.DuplicateBytesPerCallMinute)
	}
	if st.AllTraffic {
		fmt.Fprint(w, "; all traffic through the relay")
	}
	if st.RelayRestarts > 0 {
		fmt.Fprintf(w, "; the relay restarted %d times (handshook again at once)", st.RelayRestarts)
	}
	fmt.Fprintln(w)
	for _, l := range st.Lines {
		state := "UNREACHABLE"
		if l.Reachable {
			state = "reachable"
		}
		fmt.Fprintf(w, "  %s on %s: %s, rtt %s, loss %.0f%%, %d bytes out, %d in", l.Name, l.Interface, state,
			l.RTT.Round(100*time.Microsecond), l.Loss*100, l.BytesOut, l.BytesIn)
		if l.DuplicateBytesOut > 0 {
			fmt.Fprintf(w, ", %d duplicate", l.DuplicateBytesOut)
		}
		fmt.Fprintln(w)
	}
	sh := st.Sharing
	if !sh.Last.IsZero() || sh.Error != "" {
		fmt.Fprintf(w, "blocks shared with the relay: %d sent, %d taken", sh.Pushed, sh.Taken)
		if sh.Error != "" {
			fmt.Fprintf(w, " (last exchange failed: %s)", sh.Error)
		}
		fmt.Fprintln(w)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "error: %s\n", st.Error)
	}
}
