package sipguard

import "errors"

// Msg is what detection needs from one SIP message. Every []byte field is a view into the
// packet buffer given to Parse: valid until that buffer is reused, never copied.
//
// The scanner is hand-written rather than taken from a SIP stack because those build full
// message trees (allocating per header) and several crash on bot traffic; detection needs
// a dozen fields, read in one pass without allocating, from input that is often hostile.
type Msg struct {
	Request    bool
	Method     []byte // request method (INVITE, REGISTER, ...)
	RURI       []byte // request URI
	RUser      []byte // user part of the request URI
	Status     int    // status code of a response
	Via        []byte // first Via header value
	ViaHost    []byte // sent-by host of the first Via
	FromUser   []byte
	ToUser     []byte
	CallID     []byte
	CSeq       uint32
	CSeqMethod []byte
	UserAgent  []byte // User-Agent of a request, Server of a response
	Contact    []byte
	Auth       bool   // an Authorization or Proxy-Authorization header is present
	AuthUser   []byte // its username parameter
	// Nonce is the digest nonce of a request's credentials, or of a response's challenge
	// (WWW-Authenticate, Proxy-Authenticate): a source that sends back the nonce the PBX
	// sent to its address has proved it receives what is sent to it (proof.go).
	Nonce      []byte
	ContentLen int // -1 when absent
	BodyOff    int // offset of the body (len(b) if the header block is unterminated)
}

// Errors of Parse; a message that fails still has whatever fields were read before the fault.
var (
	ErrNotSIP    = errors.New("sipguard: not a SIP message")
	ErrTruncated = errors.New("sipguard: header block not terminated")
)

// Parse reads a SIP message (the start of a stream for TCP). It never panics and never
// allocates. Bare LF line ends, folded header lines, odd spacing, compact header names and
// any case are accepted, as real phones send all of them.
func Parse(b []byte, m *Msg) error {
	*m = Msg{ContentLen: -1}
	line, next := nextLine(b, 0)
	if line == nil {
		return ErrNotSIP
	}
	if !firstLine(line, m) {
		return ErrNotSIP
	}
	pos := next
	for pos < len(b) {
		start := pos
		line, next = nextLine(b, pos)
		if len(line) == 0 {
			m.BodyOff = next
			return nil
		}
		// Extend over folded continuation lines: the value runs to the end of the last one.
		end := start + len(line)
		for next < len(b) && (b[next] == ' ' || b[next] == '\t') {
			l2, n2 := nextLine(b, next)
			end = next + len(l2)
			next = n2
		}
		header(b[start:end], m)
		pos = next
	}
	m.BodyOff = len(b)
	return ErrTruncated
}

// nextLine returns the line at pos without its CRLF/LF and the offset after it; nil at end.
func nextLine(b []byte, pos int) ([]byte, int) {
	if pos >= len(b) {
		return nil, len(b)
	}
	for i := pos; i < len(b); i++ {
		if b[i] == '\n' {
			e := i
			if e > pos && b[e-1] == '\r' {
				e--
			}
			return b[pos:e], i + 1
		}
	}
	return b[pos:], len(b)
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trim(b []byte) []byte {
	for len(b) > 0 && isWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// field splits off the next whitespace-separated word.
func field(b []byte) (word, rest []byte) {
	b = trim(b)
	for i := 0; i < len(b); i++ {
		if isWS(b[i]) {
			return b[:i], b[i:]
		}
	}
	return b, nil
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// EqualFold compares bytes to an ASCII string, case-insensitively.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, s string) bool { return len(b) >= len(s) && EqualFold(b[:len(s)], s) }

// containsFold reports whether s (lower case) occurs in b, case-insensitively.
func containsFold(b []byte, s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i+len(s) <= len(b); i++ {
		if lower(b[i]) == s[0] && EqualFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

func firstLine(line []byte, m *Msg) bool {
	w1, rest := field(line)
	if hasPrefixFold(w1, "SIP/") {
		code, _ := field(rest)
		if len(code) != 3 {
			return false
		}
		n := 0
		for _, c := range code {
			if c < '0' || c > '9' {
				return false
			}
			n = n*10 + int(c-'0')
		}
		if n < 100 {
			return false
		}
		m.Status = n
		return true
	}
	uri, rest := field(rest)
	ver, _ := field(rest)
	if len(w1) == 0 || len(uri) == 0 || !hasPrefixFold(ver, "SIP/") {
		return false
	}
	for _, c := range w1 {
		if c < '!' || c > '~' {
			return false
		}
	}
	m.Request, m.Method, m.RURI = true, w1, uri
	m.RUser = uriUser(uri)
	return true
}

func header(h []byte, m *Msg) {
	colon := -1
	for i, c := range h {
		if c == ':' {
			colon = i
			break
		}
	}
	if colon <= 0 {
		return
	}
	name := trim(h[:colon])
	val := trim(h[colon+1:])
	switch len(name) {
	case 1:
		switch lower(name[0]) {
		case 'v':
			setVia(m, val)
		case 'f':
			m.FromUser = uriUser(val)
		case 't':
			m.ToUser = uriUser(val)
		case 'i':
			m.CallID = val
		case 'm':
			if m.Contact == nil {
				m.Contact = val
			}
		case 'l':
			m.ContentLen = atoi(val)
		}
		return
	}
	switch {
	case EqualFold(name, "via"):
		setVia(m, val)
	case EqualFold(name, "from"):
		m.FromUser = uriUser(val)
	case EqualFold(name, "to"):
		m.ToUser = uriUser(val)
	case EqualFold(name, "call-id"):
		m.CallID = val
	case EqualFold(name, "cseq"):
		num, rest := field(val)
		m.CSeq = uint32(atoi(num))
		m.CSeqMethod, _ = field(rest)
	case EqualFold(name, "user-agent"), EqualFold(name, "server"):
		if m.UserAgent == nil {
			m.UserAgent = val
		}
	case EqualFold(name, "contact"):
		if m.Contact == nil {
			m.Contact = val
		}
	case EqualFold(name, "authorization"), EqualFold(name, "proxy-authorization"):
		m.Auth = true
		if m.AuthUser == nil {
			m.AuthUser = param(val, "username")
			m.Nonce = param(val, "nonce")
		}
	case EqualFold(name, "www-authenticate"), EqualFold(name, "proxy-authenticate"):
		if m.Nonce == nil {
			m.Nonce = param(val, "nonce")
		}
	case EqualFold(name, "content-length"):
		m.ContentLen = atoi(val)
	}
}

func setVia(m *Msg, val []byte) {
	if m.Via != nil {
		return
	}
	m.Via = val
	// "SIP / 2.0 / UDP host:port;params": the host follows the transport after two slashes.
	slashes, i := 0, 0
	for ; i < len(val) && slashes < 2; i++ {
		if val[i] == '/' {
			slashes++
		}
	}
	_, rest := field(val[i:]) // the transport
	host, _ := field(rest)
	for j, c := range host {
		if c == ';' || c == ',' {
			host = host[:j]
			break
		}
	}
	m.ViaHost = host
}

// atoi reads a non-negative decimal; -1 if there is none or it overflows.
func atoi(b []byte) int {
	b = trim(b)
	if len(b) == 0 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
		if n > 1<<30 {
			return -1
		}
	}
	return n
}

// uriUser finds the user part of the (first) SIP/SIPS/TEL URI in a header value or URI.
func uriUser(v []byte) []byte {
	// Skip a quoted display name (it may hold '<' or "sip:"), then prefer the URI inside <...>.
	v = trim(v)
	if len(v) > 0 && v[0] == '"' {
		for j := 1; j < len(v); j++ {
			if v[j] == '\\' {
				j++
				continue
			}
			if v[j] == '"' {
				v = v[j+1:]
				break
			}
		}
	}
	for i, c := range v {
		if c == '<' {
			v = v[i+1:]
			break
		}
	}
	v = trim(v)
	switch {
	case hasPrefixFold(v, "sip:"):
		v = v[4:]
	case hasPrefixFold(v, "sips:"):
		v = v[5:]
	case hasPrefixFold(v, "tel:"):
		v = v[4:]
		for i, c := range v {
			if c == ';' || c == '>' || c == '?' || isWS(c) {
				return v[:i]
			}
		}
		return v
	default:
		return nil
	}
	for i, c := range v {
		switch c {
		case '@':
			u := v[:i]
			for j, d := range u { // user;params@host
				if d == ';' {
					return u[:j]
				}
			}
			// user:password@host
			for j, d := range u {
				if d == ':' {
					return u[:j]
				}
			}
			return u
		case '>', '?', ' ', '\t', '\r', '\n', ',':
			return nil
		}
	}
	return nil
}

// param returns the value of name=value (quotes removed) in a comma/semicolon parameter list.
func param(v []byte, name string) []byte {
	for i := 0; i+len(name) < len(v); i++ {
		if !hasPrefixFold(v[i:], name) {
			continue
		}
		if i > 0 && !(isWS(v[i-1]) || v[i-1] == ',' || v[i-1] == ';') {
			continue
		}
		j := i + len(name)
		for j < len(v) && isWS(v[j]) {
			j++
		}
		if j >= len(v) || v[j] != '=' {
			continue
		}
		j++
		for j < len(v) && isWS(v[j]) {
			j++
		}
		if j < len(v) && v[j] == '"' {
			j++
			for k := j; k < len(v); k++ {
				if v[k] == '\\' {
					k++
					continue
				}
				if v[k] == '"' {
					return v[j:k]
				}
			}
			return v[j:]
		}
		k := j
		for k < len(v) && v[k] != ',' && v[k] != ';' && !isWS(v[k]) {
			k++
		}
		return v[j:k]
	}
	return nil
}
