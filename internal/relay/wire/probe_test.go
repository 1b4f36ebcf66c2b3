package wire

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func mustKey(t testing.TB) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Both ends derive the same probe key from their own private and the other's public key; a
// probe survives encoding, and any flipped bit or another key fails it.
func TestProbeCodec(t *testing.T) {
	box, relay := mustKey(t), mustKey(t)
	kb, err := deriveKey(box, relay.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := deriveKey(relay, box.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if kb != kr {
		t.Fatal("box and relay derive different probe keys")
	}
	if _, err := deriveKey(box, wgtypes.Key{}); err == nil {
		t.Fatal("an all-zero (low-order) public key was accepted")
	}
	p := probe{kind: kindRequest, flags: flagDuplicate, line: 3, seq: 1<<40 + 7, stamp: time.Now().UnixNano(), sender: box.PublicKey()}
	var buf [probeSize]byte
	msg := p.marshal(buf[:], &kb)
	if !isProbe(msg) || !verify(msg, &kr) {
		t.Fatal("a probe does not verify under the peer's key")
	}
	got, err := parse(msg)
	if err != nil || got != p {
		t.Fatalf("parse = %+v, %v; want %+v", got, err, p)
	}
	other, _ := deriveKey(mustKey(t), relay.PublicKey())
	if verify(msg, &other) {
		t.Fatal("a probe verifies under another office's key")
	}
	for i := range msg {
		c := append([]byte(nil), msg...)
		c[i] ^= 0x10
		if _, err := parse(c); err == nil && verify(c, &kr) {
			t.Fatalf("byte %d flipped and the probe still verifies", i)
		}
	}
	if _, err := parse(msg[:probeSize-1]); err == nil {
		t.Fatal("a short probe parsed")
	}

	// A reply carries the relay's epoch in bytes 5-7, under the MAC; a request never has
	// one, a reply always.
	r := probe{kind: kindReply, line: 1, seq: 9, stamp: 3, sender: relay.PublicKey(), epoch: newEpoch()}
	msg = r.marshal(buf[:], &kr)
	if got, err := parse(msg); err != nil || got != r || !verify(msg, &kb) {
		t.Fatalf("reply parse = %+v, %v; want %+v, verified", got, err, r)
	}
	for _, bad := range []probe{{kind: kindRequest, epoch: 1}, {kind: kindReply}} {
		if _, err := parse(bad.marshal(buf[:], &kb)); err == nil {
			t.Fatalf("%+v parsed: a request with an epoch or a reply without one", bad)
		}
	}
	for range 100 {
		if e := newEpoch(); e == 0 || e > epochMask {
			t.Fatalf("epoch %#x: want 1 to 2^24-1", e)
		}
	}
}
