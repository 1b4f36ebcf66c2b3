package calls

import (
	"time"

	"github.com/pion/rtp"
)

// RFC 3550 appendix A.1 constants: a jump of more than maxDropout ahead, or more than
// maxMisorder behind, is a restarted source rather than loss or reordering.
const (
	maxDropout  = 3000
	maxMisorder = 100
	seqMod      = 1 << 16
)

// ssrcSilence is how long the followed source must be silent before another SSRC on the
// same port takes over (a transfer, a re-INVITE to a media server): a stray packet with
// another SSRC never resets a live call's counters.
const ssrcSilence = time.Second

// stream is one direction of a call's RTP, in fixed memory: RFC 3550 A.1/A.3 sequence
// accounting (loss with wrap-around) and A.8 interarrival jitter.
type stream struct {
	started bool
	ssrc    uint32
	pt      uint8  // the audio payload type: the first one that is not an event or comfort noise
	clock   uint32 // its RTP clock rate (Hz)

	// A.1 sequence state of the current source.
	maxSeq  uint16
	cycles  uint32 // shifted count of sequence number cycles
	baseSeq uint32
	badSeq  uint32
	recv    uint64 // packets of the current source

	// Totals of earlier sources (SSRC changes), so a new source never hides loss.
	prevExpected, prevRecv uint64

	// A.8 jitter of the current source, in timestamp units.
	jitterOK bool
	transit  uint32
	jitter   float64
	epoch    int64 // arrival time origin (unix ns), so arrival*clock never overflows

	packets uint64 // every packet matched to the stream, foreign SSRCs included
	foreign uint64 // packets of another SSRC while the followed one was live
	first   int64  // unix ns, 0: none yet
	last    int64

	// The current interval (a minute) starts from these.
	expPrior, recvPrior uint64
	ivJitterMax         float64 // ms
}

// expected is A.3's expected packet count over every source followed.
func (s *stream) expected() uint64 {
	if !s.started {
		return s.prevExpected
	}
	ext := uint64(s.cycles) + uint64(s.maxSeq)
	return s.prevExpected + ext - uint64(s.baseSeq) + 1
}

// received counts packets accounted by sequence (duplicates included, as A.3 does).
func (s *stream) received() uint64 { return s.prevRecv + s.recv }

// lost is A.3's cumulative loss, never negative (duplicates can outnumber losses).
func (s *stream) lost() uint64 {
	e, r := s.expected(), s.received()
	if r >= e {
		return 0
	}
	return e - r
}

// lossRatio is lost over expected, 0 before any packet.
func (s *stream) lossRatio() float64 {
	e := s.expected()
	if e == 0 {
		return 0
	}
	return float64(s.lost()) / float64(e)
}

// jitterMs is the A.8 estimate converted from timestamp units by the clock rate.
func (s *stream) jitterMs() float64 {
	if s.clock == 0 {
		return 0
	}
	return s.jitter / float64(s.clock) * 1000
}

// initSeq is A.1's init_seq: a new source starts at seq.
func (s *stream) initSeq(seq uint16) {
	s.baseSeq = uint32(seq)
	s.maxSeq = seq
	s.badSeq = seqMod + 1 // so seq == badSeq is false
	s.cycles = 0
	s.recv = 0
	s.jitterOK = false
	s.jitter = 0
}

// updateSeq is A.1's update_seq (without probation: the source is known from SIP); false
// means the packet is not counted.
func (s *stream) updateSeq(seq uint16) bool {
	udelta := seq - s.maxSeq
	switch {
	case udelta < maxDropout:
		if seq < s.maxSeq {
			s.cycles += seqMod // wrapped
		}
		s.maxSeq = seq
	case uint32(udelta) <= seqMod-maxMisorder:
		// A very large jump: the source restarted if two sequential packets say so.
		if uint32(seq) == s.badSeq {
			s.fold()
			s.initSeq(seq)
		} else {
			s.badSeq = (uint32(seq) + 1) & (seqMod - 1)
			return false
		}
	default:
		// A duplicate or reordered packet: counted, the maximum stays.
	}
	s.recv++
	return true
}

// fold moves the current source's counts into the totals before a restart.
func (s *stream) fold() {
	if !s.started {
		return
	}
	ext := uint64(s.cycles) + uint64(s.maxSeq)
	s.prevExpected += ext - uint64(s.baseSeq) + 1
	s.prevRecv += s.recv
}

// isAudio says whether a payload type carries the call's audio for jitter: telephone
// events (RFC 4733, dynamic, repeated timestamps) and comfort noise (13) would distort it.
func (s *stream) isAudio(pt uint8, events uint8) bool {
	return pt != 13 && (events == 0 || pt != events)
}

// add accounts one RTP packet arriving at now (unix ns). clockOf gives a payload type's
// clock rate; events is the call's telephone-event payload type (0: none known).
func (s *stream) add(now int64, h *rtp.Header, clockOf func(uint8) uint32, events uint8) {
	s.packets++
	if s.first == 0 {
		s.first = now
	}
	prevLast := s.last
	s.last = now
	switch {
	case !s.started:
		s.started, s.ssrc, s.epoch = true, h.SSRC, now
		s.initSeq(h.SequenceNumber)
		s.expPrior, s.recvPrior = s.prevExpected, s.prevRecv
		s.recv = 1
	case h.SSRC != s.ssrc:
		if time.Duration(now-prevLast) < ssrcSilence {
			s.foreign++
			s.last = prevLast // the followed source is still the one timed
			return
		}
		s.fold()
		s.ssrc, s.epoch = h.SSRC, now
		s.initSeq(h.SequenceNumber)
		s.recv = 1
	default:
		if !s.updateSeq(h.SequenceNumber) {
			return
		}
	}
	if !s.isAudio(h.PayloadType, events) {
		return
	}
	if s.clock == 0 || (s.pt != h.PayloadType && !s.jitterOK) {
		s.pt, s.clock = h.PayloadType, clockOf(h.PayloadType)
	}
	if h.PayloadType != s.pt || s.clock == 0 {
		return
	}
	// A.8: arrival in timestamp units; unsigned arithmetic wraps as the RFC's int does.
	arrival := uint32(uint64(now-s.epoch) * uint64(s.clock) / uint64(time.Second))
	transit := arrival - h.Timestamp
	if s.jitterOK {
		d := int32(transit - s.transit)
		if d < 0 {
			d = -d
		}
		s.jitter += (float64(d) - s.jitter) / 16
	}
	s.transit, s.jitterOK = transit, true
	if j := s.jitterMs(); j > s.ivJitterMax {
		s.ivJitterMax = j
	}
}

// interval is the loss and jitter since the last call to next.
type interval struct {
	expected, lost uint64
	jitterMax      float64 // ms
}

// current returns the running interval without ending it.
func (s *stream) current() interval {
	e, r := s.expected()-s.expPrior, s.received()-s.recvPrior
	iv := interval{expected: e, jitterMax: s.ivJitterMax}
	if e > r {
		iv.lost = e - r
	}
	return iv
}

// next ends the running interval (A.3's expected_prior/received_prior) and returns it.
func (s *stream) next() interval {
	iv := s.current()
	s.expPrior, s.recvPrior, s.ivJitterMax = s.expected(), s.received(), s.jitterMs()
	return iv
}
