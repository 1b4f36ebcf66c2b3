package calls

import (
	"bytes"
	"net/netip"
	"strconv"
)

// media is what a call needs of one side's SDP: where its audio is and in which codec.
type media struct {
	addr   netip.Addr
	port   uint16
	pt     uint8 // the first (preferred) payload type of m=audio
	codec  codec
	events uint8 // telephone-event payload type (0: none)
	hold   bool  // sendonly, recvonly or inactive: media one way (or none) is expected
}

// maxRtpmaps bounds the a=rtpmap lines looked at: an SDP is hostile input too.
const maxRtpmaps = 32

// parseSDP reads the first audio stream of an SDP body; ok is false without one. The
// c= line at media level overrides the session's (RFC 4566 §5.7).
func parseSDP(body []byte) (m media, ok bool) {
	var sessAddr, mediaAddr netip.Addr
	inAudio, seenAudio := false, false
	rtpmaps := 0
	var dir []byte
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(line, "\r \t")
		if len(line) < 2 || line[1] != '=' {
			continue
		}
		v := line[2:]
		switch line[0] {
		case 'm':
			if seenAudio {
				return finish(m, sessAddr, mediaAddr, dir)
			}
			f := bytes.Fields(v)
			if len(f) < 4 || !bytes.Equal(f[0], []byte("audio")) {
				inAudio = false
				continue
			}
			port, err := strconv.ParseUint(string(f[1]), 10, 16)
			pt, err2 := strconv.ParseUint(string(f[3]), 10, 7)
			if err != nil || err2 != nil {
				continue
			}
			inAudio, seenAudio = true, true
			m.port, m.pt = uint16(port), uint8(pt)
			if c, known := staticCodecs[m.pt]; known {
				m.codec = c
			} else {
				m.codec = defaultCodec
			}
		case 'c':
			f := bytes.Fields(v)
			if len(f) < 3 {
				continue
			}
			a, err := netip.ParseAddr(string(bytes.SplitN(f[2], []byte("/"), 2)[0]))
			if err != nil {
				continue
			}
			if inAudio {
				mediaAddr = a
			} else if !seenAudio {
				sessAddr = a
			}
		case 'a':
			switch {
			case bytes.Equal(v, []byte("sendonly")), bytes.Equal(v, []byte("recvonly")), bytes.Equal(v, []byte("inactive")), bytes.Equal(v, []byte("sendrecv")):
				if inAudio || !seenAudio {
					dir = v
				}
			case inAudio && bytes.HasPrefix(v, []byte("rtpmap:")) && rtpmaps < maxRtpmaps:
				rtpmaps++
				rtpmap(&m, v[len("rtpmap:"):])
			}
		}
	}
	if !seenAudio {
		return media{}, false
	}
	return finish(m, sessAddr, mediaAddr, dir)
}

func finish(m media, sess, med netip.Addr, dir []byte) (media, bool) {
	m.addr = sess
	if med.IsValid() {
		m.addr = med
	}
	// RFC 3264 §8.4 hold, or RFC 2543's c=0.0.0.0: media one way or none is expected.
	m.hold = len(dir) > 0 && !bytes.Equal(dir, []byte("sendrecv")) || m.addr.IsUnspecified()
	return m, true
}

// rtpmap reads "PT NAME/CLOCK[/CHANNELS]" for the preferred payload type and telephone-event.
func rtpmap(m *media, v []byte) {
	ptb, enc, found := bytes.Cut(bytes.TrimSpace(v), []byte(" "))
	if !found {
		return
	}
	pt, err := strconv.ParseUint(string(ptb), 10, 7)
	if err != nil {
		return
	}
	name, rest, _ := bytes.Cut(bytes.TrimSpace(enc), []byte("/"))
	clockb, _, _ := bytes.Cut(rest, []byte("/"))
	clock, err := strconv.ParseUint(string(clockb), 10, 32)
	if err != nil || clock == 0 || clock > 192000 || len(name) > 32 {
		return
	}
	switch {
	case equalFoldStr(string(name), "telephone-event"):
		m.events = uint8(pt)
	case uint8(pt) == m.pt:
		m.codec = codecNamed(string(name), uint32(clock))
	}
}
