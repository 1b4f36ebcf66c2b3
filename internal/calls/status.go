package calls

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/pion/rtcp"
)

// Directions of a call's media, as the page and /metrics name them.
const (
	DirIn  = "to_pbx"   // from the far end (trunk, remote phone) to the PBX
	DirOut = "from_pbx" // from the PBX to the far end
)

// Status is what `appliance calls`, the page and /metrics show.
type Status struct {
	Enabled  bool     `json:"enabled"`
	Active   []Call   `json:"active"`
	Recent   []Call   `json:"recent"` // ended in the last 24 h, newest first
	Counters Counters `json:"counters"`
	MaxCalls int      `json:"max_calls"`
	MOSAlert float64  `json:"mos_alert"`
}

// Call is one call's figures.
type Call struct {
	ID        string    `json:"id"` // short, stable: a hash of the Call-ID
	CallID    string    `json:"call_id"`
	Extension string    `json:"extension"` // the PBX's side
	Remote    string    `json:"remote"`
	Direction string    `json:"direction"` // inbound or outbound
	Line      string    `json:"line"`      // the uplink the call used (the active one)
	Codec     string    `json:"codec"`
	Started   time.Time `json:"started"`
	Answered  time.Time `json:"answered"`
	Ended     time.Time `json:"ended,omitzero"`
	EndReason string    `json:"end_reason,omitempty"`
	PBXMedia  string    `json:"pbx_media,omitempty"`    // the PBX's SDP address:port
	FarMedia  string    `json:"remote_media,omitempty"` // the far end's SDP address:port
	ToPBX     Flow      `json:"to_pbx"`
	FromPBX   Flow      `json:"from_pbx"`
	RTTMs     float64   `json:"rtt_ms,omitempty"` // box to far end, from RTCP
	MOS       float64   `json:"mos"`              // whole call so far (0: no media yet)
	Worst     *Minute   `json:"worst_minute,omitempty"`
	OneWay    bool      `json:"one_way"`
	Poor      bool      `json:"poor"`
	Hold      bool      `json:"hold"`
}

// Flow is one direction's RTP so far.
type Flow struct {
	Packets  uint64    `json:"packets"`
	Expected uint64    `json:"expected"`
	Lost     uint64    `json:"lost"`
	LossPct  float64   `json:"loss_pct"`
	JitterMs float64   `json:"jitter_ms"`
	MOS      float64   `json:"mos"` // 0: no media
	Last     time.Time `json:"last,omitzero"`
}

// Minute is a call's rated minute: its worse direction's loss, peak jitter and MOS.
type Minute struct {
	Start     time.Time `json:"start"`
	Direction string    `json:"direction"`
	LossPct   float64   `json:"loss_pct"`
	JitterMs  float64   `json:"jitter_ms"`
	MOS       float64   `json:"mos"`
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func (c *call) flow(s *stream) Flow {
	f := Flow{Packets: s.packets, Expected: s.expected(), Lost: s.lost(), LossPct: round2(s.lossRatio() * 100), JitterMs: round2(s.jitterMs())}
	if s.last != 0 {
		f.Last = time.Unix(0, s.last)
		f.MOS = round2(estimate(s.lossRatio(), s.jitterMs(), c.rttMs, c.codec))
	}
	return f
}

// snapshot is the call's figures at now.
func (c *call) snapshot(now time.Time) Call {
	out := Call{ID: c.id, CallID: c.callID, Extension: c.ext, Remote: c.remote, Direction: "inbound", Line: c.line,
		Codec: c.codec.name, Started: c.started, Answered: c.answered, Ended: c.ended, EndReason: c.endReason,
		ToPBX: c.flow(&c.in), FromPBX: c.flow(&c.out), RTTMs: round2(c.rttMs), OneWay: c.oneWay, Poor: c.poor,
		Hold: c.pbx.hold || c.far.hold}
	if c.outbound {
		out.Direction = "outbound"
	}
	if c.havePBX {
		out.PBXMedia = fmt.Sprintf("%s:%d", c.pbx.addr, c.pbx.port)
	}
	if c.have {
		out.FarMedia = fmt.Sprintf("%s:%d", c.far.addr, c.far.port)
	}
	for _, f := range []Flow{out.ToPBX, out.FromPBX} {
		if f.MOS != 0 && (out.MOS == 0 || f.MOS < out.MOS) {
			out.MOS = f.MOS
		}
	}
	if c.haveWorst {
		w := c.worst
		out.Worst = &w
	}
	if out.Worst == nil && !c.answered.IsZero() && now.Sub(c.minuteStart) >= alertMinMedia {
		// A call shorter than a minute: its only (running) minute is its worst.
		if m, ok := c.rate(c.minuteStart, c.in.current(), c.out.current()); ok {
			out.Worst = &m
		}
	}
	return out
}

// Status returns the calls now and those ended in the last 24 h.
func (t *Tracker) Status(now time.Time) Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := Status{Enabled: true, Counters: t.c, MaxCalls: t.set.MaxCalls, MOSAlert: t.set.MOSAlert, Active: []Call{}, Recent: []Call{}}
	for _, c := range t.calls {
		if !c.answered.IsZero() {
			st.Active = append(st.Active, c.snapshot(now))
		}
	}
	slices.SortFunc(st.Active, func(a, b Call) int { return a.Answered.Compare(b.Answered) })
	cut := now.Add(-keepFor)
	for i := len(t.ended) - 1; i >= 0; i-- {
		if t.ended[i].Ended.Before(cut) {
			break
		}
		st.Recent = append(st.Recent, t.ended[i])
	}
	return st
}

// keepFor is how long ended calls are listed.
const keepFor = 24 * time.Hour

// Ended returns the ring of ended calls within keepFor, oldest first (what is saved).
func (t *Tracker) Ended(now time.Time) []Call {
	t.mu.Lock()
	defer t.mu.Unlock()
	cut := now.Add(-keepFor)
	i := 0
	for i < len(t.ended) && t.ended[i].Ended.Before(cut) {
		i++
	}
	return slices.Clone(t.ended[i:])
}

// Restore puts saved ended calls back (at start), keeping the newest KeepEnded.
func (t *Tracker) Restore(ended []Call, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cut := now.Add(-keepFor)
	ended = slices.DeleteFunc(slices.Clone(ended), func(c Call) bool { return c.Ended.Before(cut) || c.Ended.After(now.Add(time.Hour)) })
	slices.SortStableFunc(ended, func(a, b Call) int { return a.Ended.Compare(b.Ended) })
	if n := len(ended); n > t.set.KeepEnded {
		ended = ended[n-t.set.KeepEnded:]
	}
	t.ended = append(ended, t.ended...)
}

// rtcp takes the round trip between the box and the far end from RTCP (RFC 3550 §6.4.1):
// the box notes when it saw each of the PBX's sender reports, and a report block from the
// far end that echoes one (LSR) after a delay (DLSR) gives arrival - seen - DLSR.
func (t *Tracker) rtcp(now time.Time, c *call, p []byte, fromPBX bool) {
	pkts, err := rtcp.Unmarshal(p)
	if err != nil {
		return
	}
	for _, pk := range pkts {
		var reports []rtcp.ReceptionReport
		switch r := pk.(type) {
		case *rtcp.SenderReport:
			if fromPBX {
				c.srs[c.srNext%len(c.srs)] = srSeen{mid: uint32(r.NTPTime >> 16), at: now.UnixNano()}
				c.srNext++
				continue
			}
			reports = r.Reports
		case *rtcp.ReceiverReport:
			if fromPBX {
				continue
			}
			reports = r.Reports
		}
		for _, rr := range reports {
			if rr.LastSenderReport == 0 {
				continue
			}
			for _, sr := range c.srs {
				if sr.at == 0 || sr.mid != rr.LastSenderReport {
					continue
				}
				rtt := time.Duration(now.UnixNano()-sr.at) - time.Duration(uint64(rr.Delay)*uint64(time.Second)>>16)
				if rtt >= 0 && rtt < 10*time.Second {
					c.rttMs = float64(rtt) / float64(time.Millisecond)
				}
			}
		}
	}
}

// WriteText prints the calls for people; zone is the site's time zone.
func (st Status) WriteText(w io.Writer, zone *time.Location) {
	if !st.Enabled {
		fmt.Fprintln(w, "call quality is off ([voice.calls] enabled = false)")
		return
	}
	fmt.Fprintf(w, "calls now: %d (at most %d followed); since start: %d calls, %d with one-way audio, %d poor (MOS below %s)\n",
		len(st.Active), st.MaxCalls, st.Counters.Calls, st.Counters.OneWay, st.Counters.Poor, ftoa(st.MOSAlert))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	row := func(c Call, when string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f%% / %.2f%%\t%.1f / %.1f\t%s\t%s\t%s\n", when, c.Extension, c.Direction, c.Remote, orDash(c.Line), orDash(c.Codec),
			c.ToPBX.LossPct, c.FromPBX.LossPct, c.ToPBX.JitterMs, c.FromPBX.JitterMs, mosText(c.MOS), worstText(c.Worst), flags(c))
	}
	table := func(title, whenCol string, calls []Call, when func(Call) string) {
		if len(calls) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		fmt.Fprintln(tw, whenCol+"\text\tdirection\tremote\tline\tcodec\tloss in/out\tjitter ms in/out\tMOS\tworst minute\t")
		for _, c := range calls {
			row(c, when(c))
		}
		tw.Flush()
	}
	table("now", "answered", st.Active, func(c Call) string { return c.Answered.In(zone).Format("15:04:05") })
	table("last 24 h", "ended", st.Recent, func(c Call) string { return c.Ended.In(zone).Format("01-02 15:04") })
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mosText(v float64) string {
	if v == 0 {
		return "-"
	}
	return ftoa(v)
}

func worstText(m *Minute) string {
	if m == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%.1f%% loss, %.1f ms, %s)", ftoa(m.MOS), m.LossPct, m.JitterMs, m.Direction)
}

func flags(c Call) string {
	s := ""
	if c.OneWay {
		s += "ONE-WAY "
	}
	if c.Poor {
		s += "POOR "
	}
	if c.Hold {
		s += "hold"
	}
	return s
}
