// Command bench-voice measures voice first on a full line in the namespace lab (root only).
//
// The shaping figures (shaping.go): a call's one-way delay from the PBX to the trunk while an
// office PC uploads with four TCP streams over a 4 Mbit/s fixed line with a modem-sized queue
// (300 ms), with and without the shaper; the upload's share of the line with it; how long
// the call's delay takes to recover when an autorated line falls from 8 to 2 Mbit/s; the
// machine's CPU while 100 Mbit/s go through the box, shaped and not. It prints one line per
// figure: `name value` or `name key=value ...`.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// bench is one group of figures; each prints its own lines.
type bench struct {
	name string
	run  func(o opts) error
}

// benches run in order: the shaping figures (shaping.go), then the call-quality figures
// (engineer F's calls.go: benchCalls, call_quality_visible_s and one_way_audio_alert_s).
var benches = []bench{
	{"shaping", benchShaping},
	{"calls", func(opts) error { return benchCalls() }}, // calls.go
}

type opts struct {
	load    time.Duration // each loaded measurement
	trials  int           // autorate drops
	cpuLoad time.Duration // each CPU measurement
	only    string
}

func main() {
	var o opts
	flag.DurationVar(&o.load, "load", 20*time.Second, "length of each loaded measurement (iperf3 upload)")
	flag.IntVar(&o.trials, "trials", 3, "autorate trials (8 -> 2 Mbit/s drops)")
	flag.DurationVar(&o.cpuLoad, "cpu", 10*time.Second, "length of each CPU measurement at 100 Mbit/s")
	flag.StringVar(&o.only, "only", "", "run only this group (shaping, calls)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("bench-voice needs root (network namespaces, nftables, tc)")
	}
	for _, b := range benches {
		if o.only != "" && o.only != b.name {
			continue
		}
		if err := b.run(o); err != nil {
			fail(b.name + ": " + err.Error())
		}
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-voice:", msg)
	os.Exit(1)
}
