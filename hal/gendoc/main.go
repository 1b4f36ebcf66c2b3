// Command gendoc prints docs/leds.md from the LED patterns defined in package hal.
package main

import (
	"fmt"

	"github.com/officeedge/appliance/hal"
)

func main() { fmt.Print(hal.Doc()) }
