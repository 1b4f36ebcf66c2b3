// Package hal drives the box's status LEDs and failover button, on real GPIO (periph.io) or a simulated board.
package hal

import (
	"fmt"
	"strings"
	"time"
)

// LED names, as on the box's front and on the status page.
const (
	LEDHealth = "health"
	LEDUplink = "uplink"
	LEDAlert  = "alert"
)

// LEDNames lists the LEDs in the order they sit on the box.
var LEDNames = []string{LEDHealth, LEDUplink, LEDAlert}

// Pattern is how an LED lights.
type Pattern string

// The patterns. Their timing is in patterns below, their meaning in Meanings: the one place
// both are defined (docs/leds.md and the status page are generated from them).
const (
	Off         Pattern = "off"
	On          Pattern = "on"
	SlowBlink   Pattern = "slow-blink"
	FastBlink   Pattern = "fast-blink"
	DoubleFlash Pattern = "double-flash"
)

type patternDef struct {
	steps []time.Duration // on, off, on, off... repeated; empty: steady
	looks string          // how it looks to a person
}

var patterns = map[Pattern]patternDef{
	Off:         {nil, "dark"},
	On:          {nil, "lit steadily"},
	SlowBlink:   {[]time.Duration{time.Second, time.Second}, "slow blink: 1 s on, 1 s off"},
	FastBlink:   {[]time.Duration{150 * time.Millisecond, 150 * time.Millisecond}, "fast blink: about 3 times a second"},
	DoubleFlash: {[]time.Duration{150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond, 1550 * time.Millisecond}, "two short flashes every 2 s"},
}

// Steps are the pattern's on/off durations in milliseconds, starting with on (empty: steady).
func (p Pattern) Steps() []int64 {
	var out []int64
	for _, d := range patterns[p].steps {
		out = append(out, d.Milliseconds())
	}
	return out
}

// Lit says whether an LED showing p is lit at elapsed time into the pattern.
func (p Pattern) Lit(elapsed time.Duration) bool {
	def := patterns[p]
	if len(def.steps) == 0 {
		return p == On
	}
	var period time.Duration
	for _, d := range def.steps {
		period += d
	}
	if elapsed < 0 {
		elapsed = 0
	}
	t := elapsed % period
	for i, d := range def.steps {
		if t < d {
			return i%2 == 0
		}
		t -= d
	}
	return false
}

// Looks describes the pattern to a person.
func (p Pattern) Looks() string { return patterns[p].looks }

// Meaning is what one LED showing one pattern tells a person on site, and what to do.
type Meaning struct {
	LED     string
	Pattern Pattern
	Means   string
	Do      string
}

// Meanings is the one table of what the LEDs say.
var Meanings = []Meaning{
	{LEDHealth, On, "All is well.", "Nothing."},
	{LEDHealth, SlowBlink, "Degraded: running on the backup uplink, an uplink or the SIP trunk is down, or alert emails cannot be sent.", "Look at the status page for which one."},
	{LEDHealth, FastBlink, "Starting up, or the last configuration change was refused.", "Wait a minute; if it keeps blinking, see the status page or the log."},
	{LEDUplink, On, "The office is on the fixed line (primary).", "Nothing."},
	{LEDUplink, DoubleFlash, "The office is on the modem (backup), because the fixed line failed.", "Nothing: it returns to the fixed line by itself when the line is healthy again."},
	{LEDUplink, SlowBlink, "The modem (backup) was forced with the button or the status page.", "Press the button briefly to return to automatic."},
	{LEDUplink, Off, "No way to the internet: both uplinks are down.", "Check the modem and the fixed-line router and their cables."},
	{LEDAlert, Off, "No recent attack.", "Nothing."},
	{LEDAlert, FastBlink, "An attacker's address was blocked in the last few minutes (it stops by itself).", "Nothing: the box dealt with it. Details on the status page."},
	{LEDAlert, On, "A toll-fraud attempt (calls to expensive numbers) was seen.", "Tell the IT person. Hold the button 5 s to acknowledge."},
}

// Table renders Meanings as a Markdown table for the README (docs/leds.md).
func Table() string {
	var b strings.Builder
	b.WriteString("| LED | looks | means | what to do |\n|---|---|---|---|\n")
	for _, m := range Meanings {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", m.LED, m.Pattern.Looks(), m.Means, m.Do)
	}
	return b.String()
}

// ButtonTable renders what the button does, for the same page.
func ButtonTable(long time.Duration) string {
	return fmt.Sprintf("| press | does |\n|---|---|\n"+
		"| short (under %s) | toggles between *forced modem* (uplink LED slow blink) and *automatic* |\n"+
		"| long (hold %s) | returns to *automatic* and acknowledges alerts (alert LED goes dark) |\n", long, long)
}
