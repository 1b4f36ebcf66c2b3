package labtest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/officeedge/appliance/internal/lab"
)

// Kamailio starts the lab's PBX, a real Kamailio on lab.PBX4:5060 (UDP and TCP): a registrar
// with digest auth for users (extension: password) that answers 404 for unknown users and
// 403 for a wrong password, and sends calls of registered users to the trunk (lab.Trunk4).
// It returns once the PBX answers OPTIONS from the LAN phone, and stops it when t ends.
func Kamailio(t testing.TB, l *lab.Lab, users map[string]string) {
	t.Helper()
	var route strings.Builder
	exts := make([]string, 0, len(users))
	for ext := range users {
		exts = append(exts, ext)
	}
	slices.Sort(exts)
	for _, ext := range exts {
		fmt.Fprintf(&route, "\tif ($var(user) == %q) { $var(pw) = %q; }\n", ext, users[ext])
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(kamailioCfg, route.String())), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, err := l.Start(lab.HostPBX, "kamailio", "-f", path, "-DD", "-E", "-Y", dir, "-w", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Stop(cmd) })
	ok := false
	deadline := time.Now().Add(20 * time.Second)
	for !ok && time.Now().Before(deadline) {
		if ok = SIPAnswers(l, lab.HostPhone, lab.Phone4, lab.PBX4); !ok {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatalf("kamailio did not answer OPTIONS within 20s:\n%s", l.Output(cmd))
	}
}

// SIPAnswers sends one OPTIONS from host (bound to from:5071) to to:5060 and says whether a
// 200 came back within a second.
func SIPAnswers(l *lab.Lab, host, from, to string) bool {
	c, err := l.DialUDP(host, from+":5071", to+":5060")
	if err != nil {
		return false
	}
	defer c.Close()
	_, _ = c.Write([]byte("OPTIONS sip:" + to + " SIP/2.0\r\nVia: SIP/2.0/UDP " + from + ":5071;branch=z9hG4bKprobe\r\n" +
		"From: <sip:probe@" + from + ">;tag=1\r\nTo: <sip:" + to + ">\r\nCall-ID: probe-" + from + "\r\nCSeq: 1 OPTIONS\r\n" +
		"Max-Forwards: 70\r\nUser-Agent: lab-probe\r\nContent-Length: 0\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 2048)
	n, err := c.Read(b)
	return err == nil && strings.HasPrefix(string(b[:n]), "SIP/2.0 200")
}

// kamailioCfg is the PBX's configuration; %s is its route[USERS], which sets $var(pw) for
// $var(user).
const kamailioCfg = `#!KAMAILIO
debug=1
log_stderror=yes
children=2
tcp_children=2
dns=no
rev_dns=no
auto_aliases=no
listen=udp:192.168.50.10:5060
listen=tcp:192.168.50.10:5060
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("auth", "nonce_expire", 300)

request_route {
	if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
	if (has_totag()) {
		if (loose_route()) { t_relay(); exit; }
		# In-dialog requests without a route set go where their request URI says.
		t_relay();
		exit;
	}
	if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
	if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
	if (is_method("OPTIONS") && $rU == $null) { sl_send_reply("200", "OK"); exit; }
	if ($si == "192.0.2.10") { sl_send_reply("404", "No such number"); exit; }
	$var(pw) = "";
	$var(user) = $fU;
	if (is_method("REGISTER")) { $var(user) = $tU; }
	route(USERS);
	if ($var(pw) == "") { sl_send_reply("404", "Not Found"); exit; }
	if (!is_present_hf("Authorization") && !is_present_hf("Proxy-Authorization")) {
		if (is_method("REGISTER")) { www_challenge("pbx", "0"); } else { proxy_challenge("pbx", "0"); }
		exit;
	}
	if (is_method("REGISTER")) {
		$var(rc) = pv_www_authenticate("pbx", "$var(pw)", "0");
	} else {
		$var(rc) = pv_proxy_authenticate("pbx", "$var(pw)", "0");
	}
	if ($var(rc) == -2 || $var(rc) == -3) { sl_send_reply("403", "Wrong password"); exit; }
	if ($var(rc) < 0) {
		if (is_method("REGISTER")) { www_challenge("pbx", "0"); } else { proxy_challenge("pbx", "0"); }
		exit;
	}
	consume_credentials();
	if (is_method("REGISTER")) { save("location"); exit; }
	if (is_method("INVITE")) {
		record_route();
		$ru = "sip:" + $rU + "@192.0.2.10:5060";
		t_relay();
		exit;
	}
	sl_send_reply("405", "Not allowed");
}

route[USERS] {
%s}
`
