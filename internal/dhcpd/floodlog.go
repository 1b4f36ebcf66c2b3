package dhcpd

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Why a packet was not served, as the summary says it.
const (
	dropMAC      = "over the per-device limit"
	dropNewcomer = "from devices never seen, over their shared limit"
	dropGlobal   = "over the server's overall limit"
	dropQueue    = "queue full"
	dropNew      = "new devices over new_devices_per_hour"
	dropDecline  = "DECLINEs of addresses the device was not given"
)

// dropReasons are the short, stable names of why a packet was not served, for
// Counters.DroppedBy and /metrics.
var dropReasons = map[string]string{
	dropMAC:      "per_device_limit",
	dropNewcomer: "newcomer_limit",
	dropGlobal:   "global_limit",
	dropQueue:    "queue_full",
	dropNew:      "new_devices_limit",
	dropDecline:  "decline",
}

const (
	// summaryEvery is how often dropped packets are summed up in one log line.
	summaryEvery = 10 * time.Second
	// maxDropMACs bounds the distinct MACs counted for the summary.
	maxDropMACs = 10_000
	// Per-packet log lines (a NAK, a decline, a refused name) pass at 1 a second, 10 at once;
	// the rest are counted in the summary.
	lineRate, lineBurst = 1, 10
)

var warnLevel = slog.LevelWarn

// floodLog counts what a flood costs and says it once every summaryEvery, so a flood of
// any size writes a bounded number of log lines.
type floodLog struct {
	log   *slog.Logger
	lines *rate.Limiter

	mu    sync.Mutex
	drops map[string]uint64
	macs  map[[6]byte]struct{}
	quiet uint64

	total atomic.Uint64 // packets dropped since the start
	// since counts the drops since the start by short reason (dropReasons); under mu.
	since map[string]uint64
}

func newFloodLog(log *slog.Logger) *floodLog {
	return &floodLog{log: log, lines: rate.NewLimiter(lineRate, lineBurst), drops: map[string]uint64{}, since: map[string]uint64{}, macs: map[[6]byte]struct{}{}}
}

// drop counts one packet from mac not served for reason.
func (f *floodLog) drop(reason string, mac [6]byte) {
	f.total.Add(1)
	f.mu.Lock()
	f.drops[reason]++
	if r, ok := dropReasons[reason]; ok {
		f.since[r]++
	} else {
		f.since["other"]++
	}
	if len(f.macs) < maxDropMACs {
		f.macs[mac] = struct{}{}
	}
	f.mu.Unlock()
}

// droppedBy is a copy of the drops since the start by short reason.
func (f *floodLog) droppedBy() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.since)
}

// logf logs one line about one packet, unless too many were logged lately.
func (f *floodLog) logf(level slog.Level, msg string, args ...any) {
	if f.lines.Allow() {
		f.log.Log(context.Background(), level, msg, args...)
		return
	}
	f.mu.Lock()
	f.quiet++
	f.mu.Unlock()
}

// summary is the line for what was dropped since the last one, or "" for nothing.
func (f *floodLog) summary(every time.Duration) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n uint64
	var why []string
	for r, c := range f.drops {
		n += c
		why = append(why, fmt.Sprintf("%d %s", c, r))
	}
	sort.Strings(why)
	macs := fmt.Sprint(len(f.macs))
	if len(f.macs) >= maxDropMACs {
		macs = "more than " + macs
	}
	quiet := f.quiet
	clear(f.drops)
	clear(f.macs)
	f.quiet = 0
	var b strings.Builder
	if n > 0 {
		fmt.Fprintf(&b, "dhcp: %d packets dropped from %s MACs in the last %s (%s)", n, macs, every, strings.Join(why, ", "))
	}
	if quiet > 0 {
		if b.Len() > 0 {
			b.WriteString("; ")
		} else {
			b.WriteString("dhcp: ")
		}
		fmt.Fprintf(&b, "%d log lines held back in the last %s", quiet, every)
	}
	return b.String()
}

// run logs the summary every summaryEvery until ctx ends, and once more then.
func (f *floodLog) run(ctx context.Context) {
	tick := time.NewTicker(summaryEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if line := f.summary(summaryEvery); line != "" {
				f.log.Warn(line)
			}
			return
		case <-tick.C:
			if line := f.summary(summaryEvery); line != "" {
				f.log.Warn(line)
			}
		}
	}
}
