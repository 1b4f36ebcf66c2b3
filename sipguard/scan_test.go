package sipguard

import (
	"os"
	"path/filepath"
	"testing"
)

func torture(t testing.TB) map[string][]byte {
	files, err := filepath.Glob("testdata/rfc4475/*.sip")
	if err != nil || len(files) < 20 {
		t.Fatalf("RFC 4475 test messages missing: %v %d", err, len(files))
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func TestTorture(t *testing.T) {
	msgs := torture(t)
	var m Msg
	for name, b := range msgs {
		_ = Parse(b, &m) // must not panic on any of them
		t.Logf("%s: req=%v method=%q status=%d from=%q to=%q callid=%.20q cseq=%d ua=%q auth=%v cl=%d", name, m.Request, m.Method, m.Status, m.FromUser, m.ToUser, m.CallID, m.CSeq, m.UserAgent, m.Auth, m.ContentLen)
	}
	if err := Parse(msgs["wsinv.sip"], &m); err != nil {
		t.Fatal(err)
	}
	check := func(what string, got []byte, want string) {
		t.Helper()
		if string(got) != want {
			t.Errorf("wsinv %s = %q, want %q", what, got, want)
		}
	}
	check("method", m.Method, "INVITE")
	check("ruser", m.RUser, "vivekg")
	check("to user (folded To)", m.ToUser, "vivekg")
	check("from user (quoted display name)", m.FromUser, "jdrosen")
	check("call-id", m.CallID, "wsinv.ndaksdj@192.0.2.1")
	check("cseq method (folded)", m.CSeqMethod, "INVITE")
	check("via host (odd spacing)", m.ViaHost, "192.0.2.2")
	if m.CSeq != 9 || m.ContentLen != 150 || m.Contact == nil {
		t.Errorf("wsinv cseq=%d content-length=%d contact=%q", m.CSeq, m.ContentLen, m.Contact)
	}
	if err := Parse(msgs["esc01.sip"], &m); err != nil || string(m.CallID) != "esc01.239409asdfakjkn23onasd0-3234" {
		t.Errorf("esc01 compact Call-ID: %q %v", m.CallID, err)
	}
	if err := Parse(msgs["unreason.sip"], &m); err != nil || m.Status != 200 || string(m.CSeqMethod) != "INVITE" {
		t.Errorf("unreason: status %d %v", m.Status, err)
	}
	if err := Parse(msgs["bigcode.sip"], &m); err == nil {
		t.Errorf("bigcode: a 10-digit status code was accepted (status %d)", m.Status)
	}
	if err := Parse(msgs["ncl.sip"], &m); err != nil || m.ContentLen != -1 {
		t.Errorf("ncl: negative Content-Length read as %d (%v)", m.ContentLen, err)
	}
	if err := Parse(msgs["regaut01.sip"], &m); err != nil || !m.Auth || m.AuthUser != nil {
		t.Errorf("regaut01: auth=%v user=%q", m.Auth, m.AuthUser)
	}
	if err := Parse(msgs["lwsstart.sip"], &m); err != nil || string(m.Method) != "INVITE" {
		t.Errorf("lwsstart: %q %v", m.Method, err)
	}
}

func TestParseFields(t *testing.T) {
	msg := "REGISTER sip:192.0.2.1 SIP/2.0\n" + // bare LF line ends
		"v: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1\n" +
		"f: \"x\" <sip:1001@192.0.2.1>;tag=1\n" +
		"t: <sips:1001@192.0.2.1>\n" +
		"i: abc@def\n" +
		"CSeq:   2    REGISTER\n" +
		"User-Agent: friendly-scanner\n" +
		"m: <sip:1001@192.0.2.9:5060>\n" +
		"Authorization: Digest realm=\"x\",\n username=\"1001\", nonce=\"n\"\n" +
		"l: 0\n\n"
	var m Msg
	if err := Parse([]byte(msg), &m); err != nil {
		t.Fatal(err)
	}
	if string(m.FromUser) != "1001" || string(m.ToUser) != "1001" || string(m.CallID) != "abc@def" || m.CSeq != 2 ||
		string(m.UserAgent) != "friendly-scanner" || !m.Auth || string(m.AuthUser) != "1001" || m.ContentLen != 0 ||
		string(m.ViaHost) != "192.0.2.9:5060" || m.BodyOff != len(msg) {
		t.Errorf("fields: %+v", m)
	}
	for _, bad := range []string{"", "\r\n", "hello", "SIP/2.0 abc OK\r\n", "GET / HTTP/1.1\r\n\r\n", "INVITE\r\n"} {
		if err := Parse([]byte(bad), &m); err == nil {
			t.Errorf("%q parsed as SIP", bad)
		}
	}
}

func TestParseNoAllocs(t *testing.T) {
	b := torture(t)["wsinv.sip"]
	var m Msg
	if n := testing.AllocsPerRun(100, func() { _ = Parse(b, &m) }); n != 0 {
		t.Errorf("Parse allocates %v times per message", n)
	}
}

// FuzzParse: the scanner must never panic, and the views it returns must lie inside the input.
func FuzzParse(f *testing.F) {
	for _, b := range torture(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Msg
		_ = Parse(b, &m)
		for _, v := range [][]byte{m.Method, m.RURI, m.RUser, m.Via, m.ViaHost, m.FromUser, m.ToUser, m.CallID, m.CSeqMethod, m.UserAgent, m.Contact, m.AuthUser} {
			if len(v) > len(b) {
				t.Fatalf("field longer than the message")
			}
		}
		if m.BodyOff < 0 || m.BodyOff > len(b) {
			t.Fatalf("body offset %d outside %d", m.BodyOff, len(b))
		}
		// The engine must survive whatever the scanner returns.
		e := NewEngine(testThresholds())
		e.Observe(attacker, pbx, now0, &m)
	})
}
