package voicemove

import (
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var movedDesc = prometheus.NewDesc("appliance_voice_moved",
	"1 while the office's voice is moved off this uplink (its downlink flooded), 0 otherwise.", []string{"line"}, nil)

// collector is /metrics' view of the move.
type collector struct {
	status func() (Status, bool)
	lines  func() []string
}

// Collector gives appliance_voice_moved{line} for each uplink named by lines, from the part
// in force (status false: the move is off, nothing is sent).
func Collector(status func() (Status, bool), lines func() []string) prometheus.Collector {
	return collector{status: status, lines: lines}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- movedDesc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.status()
	if !ok {
		return
	}
	for _, l := range c.lines() {
		v := 0.0
		if st.Moved && st.From == l {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(movedDesc, prometheus.GaugeValue, v, l)
	}
}

// WriteText prints the status for people.
func (st Status) WriteText(w io.Writer) {
	if st.Moved {
		how := "direct"
		if st.Relay {
			how = "the relay's tunnel"
		}
		fmt.Fprintf(w, "voice MOVED from %s to %s (%s) for %s: %s\n", st.From, st.To, how, time.Since(st.Since).Round(time.Second), st.Why)
	} else {
		fmt.Fprintf(w, "voice on the active line %s", orDash(st.Line))
		if !st.Since.IsZero() {
			fmt.Fprintf(w, " (back for %s: %s)", time.Since(st.Since).Round(time.Second), st.Why)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  %s dropped at the firewall of %s received; %s\n", bits(st.Dropped), bits(st.Reference), st.Quality)
	if st.Error != "" {
		fmt.Fprintf(w, "  ERROR: %s\n", st.Error)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
