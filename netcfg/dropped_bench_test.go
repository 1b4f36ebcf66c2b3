package netcfg

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/officeedge/appliance/internal/lab"
)

// BenchmarkDroppedFull is one read of the dropped view with every dropped set full (what a
// page refresh costs at most every droppedEvery under a distributed attack).
func BenchmarkDroppedFull(b *testing.B) {
	fw := benchNS(b)
	c, err := parseLab()
	if err != nil {
		b.Fatal(err)
	}
	if err := fw.Apply(Build(c)); err != nil {
		b.Fatal(err)
	}
	var script strings.Builder
	for _, k := range DroppedKinds {
		for _, w := range DroppedWindows {
			elems := make([]string, droppedSize)
			for i := range elems {
				switch k.Type {
				case TypeIPv4:
					elems[i] = fmt.Sprintf("100.64.%d.%d", i>>8, i&255)
				case TypeIPv6:
					elems[i] = fmt.Sprintf("2001:db8:66::%x", i+1)
				default:
					elems[i] = fmt.Sprint(1024 + i)
				}
			}
			fmt.Fprintf(&script, "add element inet %s %s { %s }\n", TableName, DroppedSet(k.What, w.Name), strings.Join(elems, ", "))
		}
	}
	ns := lab.Unique(b) + "-bench" // benchNS's
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("fill the dropped sets: %v: %s", err, out)
	}
	ws, err := fw.Dropped(10)
	if err != nil || len(ws) != 2 || !ws[0].Full || ws[1].Seen != 2*droppedSize {
		b.Fatalf("full sets read as %+v, %v", ws, err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := fw.Dropped(10); err != nil {
			b.Fatal(err)
		}
	}
}
