package sipguard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/officeedge/appliance/internal/store"
)

// ring keeps the most recent packets of all sources in one fixed arena. A ring per source
// would cost 100k × a few packets of memory; one shared arena, searched by source when a
// block needs evidence, gives each source its recent packets for a fixed few MB.
type ring struct {
	buf  []byte
	recs []record
	next int    // next record slot
	off  int    // next write offset in buf
	abs  uint64 // bytes written since the start
}

type record struct {
	src, dst netip.Addr
	t        int64
	off, n   int32
	abs      uint64 // 1 + absolute offset of the first byte; 0: empty
}

func newRing(bytes, records int) *ring {
	return &ring{buf: make([]byte, bytes), recs: make([]record, records)}
}

// add copies one raw IP packet in; old packets are overwritten.
func (r *ring) add(src, dst netip.Addr, t time.Time, pkt []byte) {
	if len(pkt) > len(r.buf)/4 {
		pkt = pkt[:len(r.buf)/4]
	}
	if r.off+len(pkt) > len(r.buf) {
		r.abs += uint64(len(r.buf) - r.off)
		r.off = 0
	}
	copy(r.buf[r.off:], pkt)
	r.recs[r.next] = record{src: src, dst: dst, t: t.UnixNano(), off: int32(r.off), n: int32(len(pkt)), abs: r.abs + 1}
	r.next = (r.next + 1) % len(r.recs)
	r.off += len(pkt)
	r.abs += uint64(len(pkt))
}

// valid: the record's bytes have not been written over since (abs counts every byte ever
// written, so no scan is needed on the hot path).
func (r *ring) valid(rec *record) bool {
	return rec.abs != 0 && r.abs+1 <= rec.abs+uint64(len(r.buf))
}

// Packet is one captured packet for evidence.
type Packet struct {
	Time time.Time
	Data []byte // raw IP packet
}

// of returns copies of the last max packets from or to a, oldest first.
func (r *ring) of(a netip.Addr, max int) []Packet {
	var out []Packet
	for i := 1; i <= len(r.recs) && len(out) < max; i++ {
		rec := r.recs[(r.next-i+len(r.recs))%len(r.recs)]
		if !r.valid(&rec) || (rec.src != a && rec.dst != a) {
			continue
		}
		out = append(out, Packet{Time: time.Unix(0, rec.t).UTC(), Data: append([]byte(nil), r.buf[rec.off:rec.off+rec.n]...)})
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// WritePcapng writes packets as a pcapng capture with one raw-IP interface. Hand-written
// (about 40 lines of the format) to keep a packet-capture library out of the firmware.
func WritePcapng(w io.Writer, pkts []Packet) error {
	le := binary.LittleEndian
	block := func(typ uint32, body []byte) error {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		n := uint32(12 + len(body))
		b := le.AppendUint32(nil, typ)
		b = le.AppendUint32(b, n)
		b = append(b, body...)
		b = le.AppendUint32(b, n)
		_, err := w.Write(b)
		return err
	}
	// Section header: byte-order magic, version 1.0, section length unknown.
	shb := le.AppendUint32(nil, 0x1A2B3C4D)
	shb = le.AppendUint16(shb, 1)
	shb = le.AppendUint16(shb, 0)
	shb = le.AppendUint64(shb, ^uint64(0))
	if err := block(0x0A0D0D0A, shb); err != nil {
		return err
	}
	// Interface: LINKTYPE_RAW (101), snaplen 0, option if_tsresol=9 (nanoseconds).
	idb := le.AppendUint16(nil, 101)
	idb = le.AppendUint16(idb, 0)
	idb = le.AppendUint32(idb, 0)
	idb = le.AppendUint16(idb, 9)
	idb = le.AppendUint16(idb, 1)
	idb = append(idb, 9, 0, 0, 0)
	idb = le.AppendUint32(idb, 0) // opt_endofopt
	if err := block(1, idb); err != nil {
		return err
	}
	for _, p := range pkts {
		ts := uint64(p.Time.UnixNano())
		epb := le.AppendUint32(nil, 0)
		epb = le.AppendUint32(epb, uint32(ts>>32))
		epb = le.AppendUint32(epb, uint32(ts))
		epb = le.AppendUint32(epb, uint32(len(p.Data)))
		epb = le.AppendUint32(epb, uint32(len(p.Data)))
		epb = append(epb, p.Data...)
		if err := block(6, epb); err != nil {
			return err
		}
	}
	return nil
}

// evidence waits for the next few seconds of the source's packets, then writes the pcap and
// the abuse report. It runs beside detection and never holds it up.
func (g *Guard) evidence(ctx context.Context, e *Entry, base string, seen time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(g.o.EvidenceAfter):
	}
	a := e.Prefix.Addr()
	g.mu.Lock()
	pkts := g.ring.of(a, 64)
	counts, first, last, _ := g.eng.Counts(a)
	g.mu.Unlock()
	var buf strings.Builder
	if err := WritePcapng(&buf, pkts); err != nil {
		g.o.Log.Error("sipguard: evidence", "err", err)
		return
	}
	if err := store.WriteFile(base+".pcapng", []byte(buf.String()), 0o600); err != nil {
		g.o.Log.Error("sipguard: evidence", "err", err)
		return
	}
	sum := sha256.Sum256([]byte(buf.String()))
	reg, rdap := RIR(a)
	r := &Report{Offender: a, Reason: e.Reason, Detail: e.Detail, Registry: reg, RDAP: rdap, Counts: counts,
		First: first, Last: last, BlockedAt: e.Since, BlockedFor: e.Expires.Sub(e.Since), Pcap: filepath.Base(base + ".pcapng"),
		PcapSHA256: hex.EncodeToString(sum[:]), Box: g.o.Site}
	if first.IsZero() {
		r.First, r.Last = seen, seen
	}
	for _, p := range pkts {
		if len(r.Samples) == 3 {
			break
		}
		if ip, ok := decodeIP(p.Data, g.o.TLSPort); ok && ip.src == a && len(ip.payload) > 0 {
			r.Samples = append(r.Samples, printable(ip.payload[:min(len(ip.payload), 600)]))
		}
	}
	if g.o.Abuse != nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r.AbuseContact, _ = g.o.Abuse.Contact(lctx, a)
		cancel()
	}
	if err := store.WriteFile(base+".txt", []byte(r.Text()), 0o600); err != nil {
		g.o.Log.Error("sipguard: abuse report", "err", err)
	}
	g.pruneEvidence(maxEvidenceFiles)
}

// maxEvidenceFiles bounds the evidence directory (a pcap and a report per block): a botnet
// of many addresses must not fill the appliance's flash.
const maxEvidenceFiles = 2000

// pruneEvidence removes the oldest evidence beyond max files, except that of blocks still in
// force. Names start with the block's UTC time, so name order is age order.
func (g *Guard) pruneEvidence(max int) {
	dir := filepath.Join(g.o.StateDir, "evidence")
	ents, err := os.ReadDir(dir) // sorted by name
	if err != nil || len(ents) <= max {
		return
	}
	keep := map[string]bool{}
	g.smu.Lock()
	for _, e := range g.st.Blocks {
		keep[e.Evidence], keep[e.Report] = true, true
	}
	g.smu.Unlock()
	for _, e := range ents[:len(ents)-max] {
		p := filepath.Join(dir, e.Name())
		if keep[p] || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			g.o.Log.Warn("sipguard: prune evidence", "err", err)
		}
	}
}
