// Package control is the daemon's local control API: its typed requests and answers, the client the CLI and the labs call it with, and the one implementation of each action (force, block, unblock, acknowledge, button) that every door calls.
package control

import (
	"net/netip"
	"time"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// DefaultSocket is where the daemon listens for the CLI.
const DefaultSocket = "/run/appliance/control.sock"

// The control API's routes (a unix socket only root reaches; HTTP over it).
const (
	PathWANStatus      = "/wan/status"        // GET: wan.Status
	PathWANForce       = "/wan/force"         // POST ForceRequest: wan.Status
	PathBlocklist      = "/blocklist"         // GET: BlocklistView
	PathBlock          = "/blocklist/block"   // POST BlockRequest: netcfg.Entry
	PathUnblock        = "/blocklist/unblock" // POST UnblockRequest: netcfg.Entry (the claims removed)
	PathAlerts         = "/alerts"            // GET: []alerts.Alert
	PathAlertsAck      = "/alerts/ack"        // POST AckRequest: AckAnswer
	PathButton         = "/hal/button"        // POST ButtonRequest: ButtonAnswer
	PathLEDs           = "/hal/leds"          // GET: []hal.LEDState
	PathSIPGuardStatus = "/sipguard/status"   // GET: sipguard's counters
	PathSIPGuardBlocks = "/sipguard/blocked"  // GET: sipguard's records of its blocks
	PathAuditExport    = "/audit/export"      // GET: the audit log as CSV
	PathAuditRecord    = "/audit/record"      // POST audit.Entry: 204
	PathNotifyTest     = "/notify/test"       // POST: a test email
	PathCrowdSecStatus = "/crowdsec/status"   // GET: crowdsec.Status
	PathPeersStatus    = "/peers/status"      // GET: []peers.Name
	PathKernelFeatures = "/kernel-features"   // GET: []kernelfeat.Feature
	PathVPNRotate      = "/vpn/rotate"        // POST ?name=&who=: the peer's new config
	PathRelayStatus    = "/relay/status"      // GET: box.Status (503 when [relay] is off)
	PathBackupStatus   = "/backup/status"     // GET: backup.Status
	PathBackupNow      = "/backup/now"        // POST ?who=
	PathBackupList     = "/backup/list"       // GET: map[string]*backup.Manifest
)

// ForceRequest sets the uplink override (wan force backup|primary|auto).
type ForceRequest struct {
	Mode wan.Mode `json:"mode"`
	By   string   `json:"by"` // the console user, for the audit log ("" is root)
}

// BlockRequest blocks an address or network by hand.
type BlockRequest struct {
	Prefix config.Prefix `json:"prefix"` // an address (192.0.2.7) or a network (192.0.2.0/24)
	For    time.Duration `json:"for"`    // nanoseconds; 0 blocks until unblocked
	Force  bool          `json:"force"`  // allow a network wider than [blocklist] widest4/widest6
	Reason string        `json:"reason"`
	By     string        `json:"by"` // the console user (the socket's door only; the page and the button name their own)
}

// UnblockRequest removes an address or network from the blocklist.
type UnblockRequest struct {
	Prefix config.Prefix `json:"prefix"`
	By     string        `json:"by"`
}

// AckRequest acknowledges every alert.
type AckRequest struct {
	By string `json:"by"`
}

// AckAnswer says how many alerts were acknowledged.
type AckAnswer struct {
	Acknowledged int `json:"acknowledged"`
}

// ButtonRequest presses the simulated button.
type ButtonRequest struct {
	Long bool   `json:"long"`
	By   string `json:"by"`
}

// ButtonAnswer says which press was made: short or long.
type ButtonAnswer struct {
	Pressed string `json:"pressed"`
}

// BlocklistView is GET /blocklist: the owner's state and the kernel's drop counters by prefix.
type BlocklistView struct {
	State   *netcfg.BlockState `json:"state"`
	Packets map[string]uint64  `json:"packets"` // by prefix text: JSON keys are strings
}

// NewBlocklistView makes the view of a state and its counters.
func NewBlocklistView(st *netcfg.BlockState, packets map[netip.Prefix]uint64) BlocklistView {
	out := make(map[string]uint64, len(packets))
	for p, n := range packets {
		out[p.String()] = n
	}
	return BlocklistView{State: st, Packets: out}
}

// PacketsByPrefix is Packets keyed by prefix again (keys that do not parse are left out).
func (v BlocklistView) PacketsByPrefix() map[netip.Prefix]uint64 {
	out := make(map[netip.Prefix]uint64, len(v.Packets))
	for k, n := range v.Packets {
		if p, err := netip.ParsePrefix(k); err == nil {
			out[p] = n
		}
	}
	return out
}

// PressName is a press's name: short or long.
func PressName(long bool) string {
	if long {
		return "long"
	}
	return "short"
}
