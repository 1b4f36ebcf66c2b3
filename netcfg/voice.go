package netcfg

import "github.com/officeedge/appliance/internal/config"

// VoiceMark is the packet-mark bit of the office's voice (the PBX's SIP and RTP with the
// trunks, the WireGuard phones): the voice routes (the relay tunnel, a flooded line's move
// to the modem) select it with ip rules, and the shaper's classes follow it. Kept apart from
// ReplyMarkMask (0x3f00) and tailscale's 0xff0000.
const VoiceMark uint32 = 0x4000

// Egress classes of the uplinks' shapers as skb priorities (major 1: the shaper's HTB root):
// nft `meta priority set` and the relay tunnel's own sockets (SO_PRIORITY) pick the class
// directly, without tc filters.
const (
	PriorityVoice       uint32 = 0x00010010 // 1:10
	PriorityInteractive uint32 = 0x00010020 // 1:20 DNS, TCP handshakes and ACKs, small packets
	PriorityBulk        uint32 = 0x00010030 // 1:30 everything else (the HTB default)
)

// voiceRules marks the office's voice and classifies the uplinks' egress for the shapers
// ([voice]).
func voiceRules(c *config.Config, t *Table) {}
