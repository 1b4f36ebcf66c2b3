// Package wire carries the relay tunnel's WireGuard over the box's lines: a conn.Bind per side and their authenticated path probes.
package wire

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Probe datagram layout (big endian). It shares the WireGuard socket, so its first byte is
// one WireGuard never uses (its types are 1-4 followed by three zero bytes).
//
//	0      magic 0xF5
//	1      version 1
//	2      kind (1 request, 2 reply)
//	3      flags (bit 0: the box wants duplication)
//	4      line id
//	5-7    zero in a request; in a reply the relay's epoch (24 bits, never zero), chosen at
//	       random when its bind is made: a new one tells the box the relay restarted and
//	       lost its WireGuard sessions
//	8-15   seq
//	16-23  unix nanoseconds of the request
//	24-55  sender's WireGuard public key
//	56-71  HMAC-SHA256 of bytes 0-55, truncated
const (
	probeMagic   = 0xF5
	probeVersion = 1
	probeSize    = 72
	macOffset    = 56
	macSize      = 16

	kindRequest = 1
	kindReply   = 2

	flagDuplicate = 1 << 0
)

// probeInfo is the HKDF info of the probe key: a key of its own, never WireGuard's.
const probeInfo = "officeedge relay probe v1"

// maxSkew is how far a request's timestamp may be from the relay's clock: a captured probe
// can't be replayed later than that, even once the relay forgot the path's last seq.
const maxSkew = 60 * time.Second

// probeKey is the HMAC key both ends derive from the static keys they already hold: X25519 of
// one's private and the other's public key, through HKDF-SHA256.
type probeKey [32]byte

func deriveKey(private, peerPublic wgtypes.Key) (probeKey, error) {
	var k probeKey
	priv, err := ecdh.X25519().NewPrivateKey(private[:])
	if err != nil {
		return k, fmt.Errorf("wire: private key: %w", err)
	}
	pub, err := ecdh.X25519().NewPublicKey(peerPublic[:])
	if err != nil {
		return k, fmt.Errorf("wire: peer public key: %w", err)
	}
	shared, err := priv.ECDH(pub) // refuses low-order points (an all-zero secret)
	if err != nil {
		return k, fmt.Errorf("wire: key agreement with %s: %w", peerPublic, err)
	}
	b, err := hkdf.Key(sha256.New, shared, nil, probeInfo, len(k))
	if err != nil {
		return k, fmt.Errorf("wire: derive probe key: %w", err)
	}
	copy(k[:], b)
	return k, nil
}

// probe is a decoded probe datagram.
type probe struct {
	kind   byte
	flags  byte
	line   uint8
	seq    uint64
	stamp  int64 // unix nanoseconds of the request (a reply echoes it)
	sender wgtypes.Key
	epoch  uint32 // a reply's relay epoch (24 bits); 0 in a request
}

// epochMask keeps an epoch to the 24 bits of bytes 5-7.
const epochMask = 1<<24 - 1

// isProbe says whether a datagram is ours rather than WireGuard's.
func isProbe(b []byte) bool { return len(b) > 0 && b[0] == probeMagic }

// marshal writes p into b (probeSize bytes) with its MAC under k.
func (p *probe) marshal(b []byte, k *probeKey) []byte {
	b = b[:probeSize]
	b[0], b[1], b[2], b[3], b[4] = probeMagic, probeVersion, p.kind, p.flags, p.line
	b[5], b[6], b[7] = byte(p.epoch>>16), byte(p.epoch>>8), byte(p.epoch)
	binary.BigEndian.PutUint64(b[8:], p.seq)
	binary.BigEndian.PutUint64(b[16:], uint64(p.stamp))
	copy(b[24:56], p.sender[:])
	m := mac(k, b[:macOffset])
	copy(b[macOffset:], m[:macSize])
	return b
}

var errProbe = errors.New("wire: not a valid probe")

// newEpoch picks a relay epoch: random, so a restarted relay almost surely has another (1 in
// 16.7 million it doesn't, and the box then rekeys on WireGuard's own timers as before).
func newEpoch() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	return max(binary.BigEndian.Uint32(b[:])&epochMask, 1)
}

// parse decodes b without checking its MAC (the key depends on the sender field).
func parse(b []byte) (probe, error) {
	var p probe
	if len(b) != probeSize || b[0] != probeMagic || b[1] != probeVersion {
		return p, errProbe
	}
	p.kind, p.flags, p.line = b[2], b[3], b[4]
	p.epoch = uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])
	if (p.kind == kindRequest) != (p.epoch == 0) || (p.kind != kindRequest && p.kind != kindReply) {
		return p, errProbe // a request has no epoch, a reply always one
	}
	p.seq = binary.BigEndian.Uint64(b[8:])
	p.stamp = int64(binary.BigEndian.Uint64(b[16:]))
	copy(p.sender[:], b[24:56])
	return p, nil
}

// verify checks b's MAC under k in constant time.
func verify(b []byte, k *probeKey) bool {
	m := mac(k, b[:macOffset])
	return subtle.ConstantTimeCompare(m[:macSize], b[macOffset:probeSize]) == 1
}

func mac(k *probeKey, msg []byte) [sha256.Size]byte {
	h := hmac.New(sha256.New, k[:])
	h.Write(msg)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
