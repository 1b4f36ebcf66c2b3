package netcfg

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A bouncer's batch lands in the kernel at once, refuses what is protected or too wide, and
// withdrawing its claims leaves a person's block on the same address in place.
func TestOwnerBlockAllAndWithdraw(t *testing.T) {
	_, fw := testNS(t, "claims")
	w := runOwner(t, fw, t.TempDir(), labConfig(t), nil)
	const a, b, n = "198.18.9.1", "198.18.9.2", "198.19.4.0/24"
	reqs := []BlockRequest{
		{Prefix: pfx(a), Source: SourceCrowdSec, Reason: "officeedge/sip-scanner", For: time.Hour},
		{Prefix: pfx(b), Source: SourceCrowdSec, Reason: "officeedge/sip-bruteforce", For: time.Hour},
		{Prefix: pfx(n), Source: SourceCrowdSec, Reason: "range", For: time.Hour},
		{Prefix: pfx("10.0.0.0/8"), Source: SourceCrowdSec, Reason: "too wide"},
		{Prefix: pfx("192.168.50.20"), Source: SourceCrowdSec, Reason: "the LAN"},
	}
	errs := w.BlockAll(reqs)
	for i, want := range []error{nil, nil, nil, ErrTooWide, ErrProtected} {
		if (want == nil) != (errs[i] == nil) || (want != nil && !errors.Is(errs[i], want)) {
			t.Errorf("request %d (%s): %v, want %v", i, reqs[i].Prefix, errs[i], want)
		}
	}
	for _, p := range []string{a + "/32", b + "/32", n} {
		if in, left := kernelHas(t, fw, p); !in || left <= 0 || left > time.Hour {
			t.Errorf("%s in the kernel %v with %s left, want an hour's block", p, in, left)
		}
	}
	if _, err := w.Block(BlockRequest{Prefix: pfx(a), Source: SourceManual, By: "root (cli)"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, b, n} {
		if err := w.Withdraw(pfx(p), SourceCrowdSec); err != nil {
			t.Fatal(err)
		}
	}
	if in, left := kernelHas(t, fw, a+"/32"); !in || left != 0 {
		t.Errorf("%s: in the kernel %v with %s left, want the person's permanent block kept", a, in, left)
	}
	if e, _ := w.Lookup(pfx(a)); len(e.Claims) != 1 || e.Claims[0].Source != SourceManual {
		t.Errorf("%s: claims %+v, want only the manual one", a, e.Claims)
	}
	for _, p := range []string{b + "/32", n} {
		if in, _ := kernelHas(t, fw, p); in {
			t.Errorf("%s still in the kernel after the withdrawal", p)
		}
	}
	if err := w.Withdraw(pfx(b), SourceCrowdSec); err != nil {
		t.Errorf("withdrawing again: %v, want no error", err)
	}
}

// A block made while the clock read 1970 (a Pi without a battery, before NTP) keeps its
// length when the clock is set right, instead of expiring at once.
func TestClaimsMadeBeforeTheClockWasSetKeepTheirLength(t *testing.T) {
	now := time.Now()
	bogus := time.Date(1970, 1, 1, 0, 5, 0, 0, time.UTC)
	cs := []Claim{
		{Source: SourceSIPGuard, Since: bogus, Until: bogus.Add(time.Hour)},
		{Source: SourceManual, Since: bogus},
		{Source: SourceCrowdSec, Since: now.Add(-time.Minute), Until: now.Add(time.Hour)},
	}
	got, ok := rebased(cs, now, now.Add(-24*time.Hour))
	if !ok || !got[0].Since.Equal(now) || !got[0].Until.Equal(now.Add(time.Hour)) || !got[1].Since.Equal(now) || !got[1].Permanent() || got[2] != cs[2] {
		t.Errorf("rebased: %+v", got)
	}
	if cs[0].Since != bogus {
		t.Error("rebased changed its input")
	}
	if _, ok := rebased(cs[2:], now, now.Add(-24*time.Hour)); ok {
		t.Error("a claim made with a right clock was rebased")
	}
}

// On a kernel without conntrack marks (the gokrazy kernels) the owner loads the ruleset
// without the reply-routing chains: the kernel would refuse the whole ruleset with them.
func TestOwnerLeavesReplyMarksOut(t *testing.T) {
	ns, fw := testNS(t, "nomark")
	w, err := NewOwner(OwnerOptions{Firewall: fw, NoReplyMarks: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := w.SetConfig(labConfig(t)); err != nil {
		t.Fatal(err)
	}
	out := nft(t, ns, "list", "table", "inet", TableName)
	if strings.Contains(out, "reply_mark") || !strings.Contains(out, "chain input") {
		t.Errorf("ruleset with NoReplyMarks:\n%s", out)
	}
}
