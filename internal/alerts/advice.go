package alerts

import "strings"

// advice is what a person should do about each kind of alert, by key prefix (the longest
// prefix that matches wins). The page, the emails and the CLI show it next to the message.
var advice = []struct{ prefix, text string }{
	{KeyHALBoard, "The box cannot drive its LEDs and button. Power it off, reseat the front-panel cable, and power it on; if this stays, the board needs service."},
	{KeyTollFraud, "Someone tried to call an expensive destination through the PBX. The source is blocked; check the PBX's call log for calls that got through, change the password of the extension named in the message, and ask the trunk provider to cap international calls."},
	{KeySIPSiteUser, "One phone at a site whose other phones work keeps failing to log in: usually a phone with an old password. Check that extension's phone; the site itself is not blocked."},
	{"firewall.write", "The firewall could not be written, so the rules in force may be old. Read the message, then run `appliance check` on the box; restart the appliance service if it stays."},
	{"config", "The new configuration was refused and the previous one is still running. Fix the file and line named in the message, then reload."},
	{"config.reverted", "A configuration change made on the status page was not confirmed in time and was put back. Make the change again and confirm it once the page still answers."},
	{"history.file", "The history (charts) file could not be read and was started empty; older history is lost. Check the box's storage."},
	{"wan.budget.", "An uplink is using its data budget faster than planned. Check what uses the modem (the History chart shows when), or raise data_budget in that uplink's table ([uplink.backup] for the modem)."},
	{"part.", "A part of the box stopped and is being restarted; the others keep running. If this stays, read the box's log for that part's error."},
	{"web.listen", "The status page cannot listen on its address or port. Check [web] listen in the configuration for an address the box does not have or a port another program uses."},
	{"web.tls", "The status page's HTTPS certificate could not be loaded or made. Check the certificate files named in [web], or remove them to let the box make its own."},
	{"dhcp.refused", "The DHCP server refused to start or to hand out addresses. Check [dhcp] for a range outside the LAN or another DHCP server on the LAN."},
	{"dhcp.leases", "The DHCP leases could not be saved: they are kept in memory, and lost if the box restarts. Check the box's storage for free space."},
	{"crowdsec.pull", "The shared blocklist cannot be fetched: the last good one stays in force. Check the box's internet connection and the [crowdsec] address and key."},
	{"crowdsec.push", "Blocks cannot be shared with the fleet: they wait on disk and are sent later. Check the [crowdsec] address and key."},
	{"crowdsec.refused", "The shared blocklist asked to block an address the box never blocks (a trusted peer, an admin or office network). Nothing was blocked; check the fleet's decision."},
	{"peers.resolve.", "A trusted name does not resolve. Check the name in [sip_peers] or [admin] and the box's DNS; its last addresses stay trusted for a while."},
	{"backup.stale.", "No verified backup copy is recent enough. Check that the destination is reachable and has space, then run `appliance backup now`."},
	{"calls.oneway", "A call had sound one way only: the media of one side did not reach the other. Usually NAT or a firewall on the media path: check the PBX's external (public) address in its SIP settings, that its RTP ports match [pbx] rtp_ports, and that the trunk sends media to the address in the PBX's SDP."},
	{"calls.mos", "A call sounded poor (estimated from its loss and jitter at the box). If it is the line, the calls card shows which direction; turn on upload shaping for that uplink ([uplink.*] upload) or move voice to the other line; if calls are poor on both lines, ask the trunk provider."},
	{"voice.moved", "The fixed line's download is being flooded by traffic the office did not ask for, so the calls were moved to the modem; the rest of the office stays on the fixed line. Nothing to do while it lasts (voice comes back by itself once the flood has been over for [voice.flood] calm, 10 s by default); if it lasts, ask the line's ISP to filter the flood and watch the modem's data budget."},
}

// Advice says, in plain words, what to do about the alert with this key.
func Advice(key string) string {
	best, text := -1, ""
	for _, a := range advice {
		if matches(key, a.prefix) && len(a.prefix) > best {
			best, text = len(a.prefix), a.text
		}
	}
	if text == "" {
		return "Read the message and the box's recent events; acknowledge the alert once it is handled."
	}
	return text
}

// matches says whether key is prefix itself, or prefix followed by more of the key: a
// prefix ending in "." or "/" takes any tail, another one only a "/" tail (the source).
func matches(key, prefix string) bool {
	if key == prefix {
		return true
	}
	if !strings.HasPrefix(key, prefix) {
		return false
	}
	if strings.HasSuffix(prefix, ".") || strings.HasSuffix(prefix, "/") {
		return true
	}
	return key[len(prefix)] == '/'
}
