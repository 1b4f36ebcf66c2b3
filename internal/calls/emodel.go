package calls

import "math"

// codec is what the E-model needs of a codec: its equipment impairment Ie and packet-loss
// robustness Bpl (ITU-T G.113 Appendix I, Table I.3).
type codec struct {
	name    string
	clock   uint32 // RTP clock rate (Hz)
	ie, bpl float64
}

// Codecs by static payload type (RFC 3551). G.711 is taken with packet loss concealment
// (Bpl 25.1; 4.3 without), as every current phone and PBX has it. G.722 has no narrowband
// Ie/Bpl in G.113; it is rated like G.711 (its RTP clock is 8000 Hz by RFC 3551's erratum
// though it samples at 16 kHz).
var staticCodecs = map[uint8]codec{
	0:  {"PCMU", 8000, 0, 25.1},
	8:  {"PCMA", 8000, 0, 25.1},
	9:  {"G722", 8000, 0, 25.1},
	18: {"G729", 8000, 11, 19.0},
}

// defaultCodec rates an unknown codec like G.711.
var defaultCodec = codec{"", 8000, 0, 25.1}

// codecNamed is a dynamic payload type's codec from its rtpmap name.
func codecNamed(name string, clock uint32) codec {
	for _, c := range staticCodecs {
		if equalFoldStr(c.name, name) {
			c.clock = clock
			return c
		}
	}
	c := defaultCodec
	c.name, c.clock = name, clock
	return c
}

func equalFoldStr(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'a' && x <= 'z' {
			x -= 32
		}
		if y >= 'a' && y <= 'z' {
			y -= 32
		}
		if x != y {
			return false
		}
	}
	return true
}

// rFactor is the E-model's transmission rating, simplified as in ITU-T G.107 (06/2015) with
// every parameter at its default but delay and loss: R = Ro - Is - Id - Ie,eff + A, where
// Ro - Is = 93.2 with all of G.107's default values, A = 0, and
//   - Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl/BurstR + Bpl)  (G.107 eq. 7-29), with random loss
//     (BurstR = 1) and the codec's Ie and Bpl from G.113 Appendix I;
//   - Id = 0.024*d + 0.11*(d - 177.3)*H(d - 177.3), d the one-way mouth-to-ear delay in ms:
//     the usual fit of G.107's Idd/Idte/Idle for echo-cancelled calls (Cole and
//     Rosenbluth, "Voice over IP performance monitoring", ACM CCR 31(2), 2001).
func rFactor(lossRatio, delayMs float64, c codec) float64 {
	ppl := math.Max(0, math.Min(lossRatio, 1)) * 100
	ieEff := c.ie + (95-c.ie)*ppl/(ppl/1+c.bpl)
	d := math.Max(0, delayMs)
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	return 93.2 - id - ieEff
}

// mos converts R to an estimated MOS (conversational quality), ITU-T G.107 Annex B (B-4).
func mos(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	m := 1 + 0.035*r + r*(r-60)*(100-r)*7e-6
	return math.Max(1, m)
}

// Delay estimate when no RTCP tells the round trip: one 20 ms packet of packetization and
// a jitter buffer of twice the measured jitter, at least 20 ms (what adaptive buffers
// settle on), plus half the RTCP round trip between the box and the far end when known.
const (
	packetizationMs = 20
	minBufferMs     = 20
)

// delayEstimate is the one-way delay the E-model is given for a direction.
func delayEstimate(jitterMs, rttMs float64) float64 {
	return packetizationMs + math.Max(minBufferMs, 2*jitterMs) + rttMs/2
}

// estimate is the MOS of a direction with this loss, jitter and round trip.
func estimate(lossRatio, jitterMs, rttMs float64, c codec) float64 {
	return mos(rFactor(lossRatio, delayEstimate(jitterMs, rttMs), c))
}
