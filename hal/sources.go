package hal

import (
	"time"

	"github.com/officeedge/appliance/internal/alerts"
	"github.com/officeedge/appliance/netcfg"
	"github.com/officeedge/appliance/wan"
)

// Sources are the other parts' typed state, as the LEDs read it.
type Sources struct {
	WAN         *wan.Status    // nil: the box has no failover part
	ConfigError bool           // the firewall owner refused the last configuration
	LastBlock   time.Time      // sipguard's newest block (NewestBlock)
	AckedAt     time.Time      // the last acknowledgement of the alerts
	Alerts      []alerts.Alert // the alerts now
	MailError   string         // why alert emails cannot be sent ("" when they can)
}

// StateOf is what the LEDs show of the box's state: a pure translation of the parts' typed
// state into the panel's.
func StateOf(in Sources) State {
	st := State{Started: true, Active: RolePrimary}
	if in.WAN != nil {
		wanState(&st, *in.WAN)
	}
	st.ConfigError = in.ConfigError
	st.LastBlock = in.LastBlock
	// A block from before the last acknowledgement has been seen by a person.
	if !st.LastBlock.After(in.AckedAt) {
		st.LastBlock = time.Time{}
	}
	for _, a := range in.Alerts {
		if !a.Acked && alerts.IsTollFraud(a.Key) {
			st.TollFraud = true
		}
	}
	if in.MailError != "" {
		st.Degraded = append(st.Degraded, "alert emails failing: "+in.MailError)
	}
	return st
}

// wanState takes in the uplinks, the active one, the override and the trunks.
func wanState(st *State, ws wan.Status) {
	st.Active, st.BothDown, st.Forced = string(ws.Active), ws.BothDown, ws.Mode != wan.Auto
	st.Started = false
	for _, u := range ws.Uplinks {
		st.Started = st.Started || u.State != wan.Unknown
		switch u.Role {
		case wan.Primary:
			st.PrimaryDown = u.State == wan.Down
		case wan.Backup:
			st.BackupDown = u.State == wan.Down
		}
	}
	for _, t := range ws.Trunks {
		if t.State == wan.Down {
			st.Degraded = append(st.Degraded, "trunk "+t.Name+" down")
		}
	}
}

// NewestBlock is when sipguard last blocked an attacker, by the blocklist's claims.
func NewestBlock(bs *netcfg.BlockState) time.Time {
	var t time.Time
	for _, e := range bs.Entries {
		for _, c := range e.Claims {
			if c.Source == netcfg.SourceSIPGuard && c.Since.After(t) {
				t = c.Since
			}
		}
	}
	return t
}
