package netcfg

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestBlockRefusesDurationsTheKernelWouldMisread(t *testing.T) {
	// Checked before the kernel is asked: no root needed.
	p := netip.MustParsePrefix("192.0.2.7/32")
	for _, d := range []time.Duration{-time.Hour, 500 * time.Microsecond} {
		err := New(0).Block(p, d)
		if err == nil || !strings.Contains(err.Error(), "at least 1ms") {
			t.Errorf("Block(%s, %s) = %v, want a refusal", p, d, err)
		}
	}
}
