package main

import (
	"fmt"
	"io"

	"github.com/officeedge/appliance/internal/kernelfeat"
)

func init() {
	commands["kernel-features"] = command{"probe this kernel for the features the appliance uses (root)", func(_ []string, _ io.Reader, stdout, _ io.Writer) error {
		for _, f := range kernelfeat.Detect() {
			if f.OK {
				fmt.Fprintf(stdout, "ok       %s\n", f.Name)
			} else {
				fmt.Fprintf(stdout, "MISSING  %s: %s (%s)\n", f.Name, f.Consequence, f.Detail)
			}
		}
		return nil
	}}
}
