// Package drsheet makes the disaster-recovery sheet from the configuration: who to call, where every backup copy is and how to restore it, what the LEDs mean, how to force the modem and how to reinstall the box.
package drsheet

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/officeedge/appliance/hal"
	"github.com/officeedge/appliance/internal/backup"
	"github.com/officeedge/appliance/internal/config"
)

// Sheet is the disaster-recovery sheet, in sections of lines.
type Sheet struct {
	Site     string    `json:"site"`
	Made     time.Time `json:"made"`
	Sections []Section `json:"sections"`
}

// Section is one heading and its items; Rows are a table when set.
type Section struct {
	Title string     `json:"title"`
	Intro string     `json:"intro,omitempty"`
	Rows  [][]string `json:"rows,omitempty"` // first row: the header
	Items []string   `json:"items,omitempty"`
}

// notSet is what an empty contact field says, so the gap is seen before the day it matters.
const notSet = "NOT SET: add it under [backup.dr]"

// New makes the sheet; st is the backups' status (nil when not known).
func New(cfg *config.Config, st *backup.Status, now time.Time) Sheet {
	s := Sheet{Site: cfg.Site, Made: now.UTC()}
	up := Section{Title: "Internet lines", Intro: "Call the ISP of a line that is down; the box moves the office to the other one by itself.",
		Rows: [][]string{{"Line", "Role", "Box port", "Address", "ISP support"}}}
	for _, u := range cfg.Uplink.All() {
		addr := string(u.Mode)
		if u.Mode == "static" {
			addr = u.Address.String() + " via " + u.Gateway.String()
		}
		up.Rows = append(up.Rows, []string{u.Name, u.Role, u.Interface, addr, orNotSet(cfg.Backup.DR.ISPSupport[u.Name])})
	}
	s.Sections = append(s.Sections, up)

	tr := Section{Title: "Phone line providers (SIP trunks)", Rows: [][]string{{"Provider", "Networks", "Support"}}}
	for _, n := range config.SortedNames(cfg.SIPPeers) {
		p := cfg.SIPPeers[n]
		if p.Kind != "trunk" {
			continue
		}
		var nets []string
		for _, x := range p.Networks {
			nets = append(nets, x.String())
		}
		tr.Rows = append(tr.Rows, []string{n, strings.Join(nets, ", "), orNotSet(cfg.Backup.DR.TrunkSupport[n])})
	}
	if len(tr.Rows) == 1 {
		tr.Items = []string{"No trunk in [sip_peers] (kind = \"trunk\")."}
	}
	if r := cfg.Relay; r.Enabled() { // the voice relay (issue 22): the trunks see only its address
		tr.Intro = "Calls go through the voice relay " + r.Endpoint + ": the trunk provider must allow " + r.PublicAddress +
			" (the office's voice address at the relay) and send calls there. If the relay is down, calls go from the lines' own addresses."
	}
	s.Sections = append(s.Sections, tr)
	if len(cfg.Backup.DR.Contacts) > 0 {
		s.Sections = append(s.Sections, Section{Title: "Other contacts", Items: cfg.Backup.DR.Contacts})
	}
	s.Sections = append(s.Sections, copies(cfg, st))

	leds := Section{Title: "What the lights on the box mean", Rows: [][]string{{"Light", "Looks", "Means", "Do"}}}
	for _, m := range hal.Meanings {
		leds.Rows = append(leds.Rows, []string{m.LED, m.Pattern.Looks(), m.Means, m.Do})
	}
	s.Sections = append(s.Sections, leds)
	s.Sections = append(s.Sections, Section{Title: "Force the modem (backup line)", Items: []string{
		"On the status page (https://" + lanAddr(cfg) + "/): \"Force modem (backup)\"; \"Automatic\" undoes it.",
		"Or press the box's button briefly; or, on the box: `appliance wan force backup` (and `appliance wan force auto` to undo).",
	}})
	s.Sections = append(s.Sections, Section{Title: "Reinstall the box on a new SD card", Items: []string{
		"On a computer with Go and this repository, with the site config (it is also in the box's own off-site copies, box/box-*.tar.gz) and image/local/http-password.txt:",
		"scripts/build-image --config image/local/appliance.toml --target pi",
		"dd if=dist/appliance-pi-VERSION.img of=/dev/sdX bs=4M conv=fsync   (the whole card), put it in the box and power it on.",
		"The box comes up with the same config; restore its state from the newest box/ copy (see above) into /perm/appliance.",
	}})
	return s
}

// copies says where each of the three copies is and how to restore from it.
func copies(cfg *config.Config, st *backup.Status) Section {
	sec := Section{Title: "Backups: where each copy is and how to restore it",
		Rows: [][]string{{"Copy", "Where", "Newest verified", "Restore"}}}
	b := cfg.Backup
	if !b.Enabled() {
		sec.Items = []string{"Backups are not configured on this box ([backup] dir): the PBX's own disk is the only copy."}
		return sec
	}
	for _, p := range b.PBX {
		from := "it pushes to the box over SFTP (port " + fmt.Sprint(b.Port) + ")"
		if p.Mode == "pull" {
			from = "the box fetches from " + p.Address + ":" + p.RemoteDir
		}
		sec.Rows = append(sec.Rows, []string{"1: PBX " + p.Name, "the PBX's own disk; " + from, "", "the PBX's own restore"})
	}
	sec.Rows = append(sec.Rows, []string{"2: on the box", b.Dir + " (pbx/NAME/, box/)", "", "copy the file to the PBX and use its restore"})
	newest := map[string]string{}
	if st != nil {
		for _, d := range st.Destinations {
			if d.Newest != nil {
				newest[d.Name] = d.Newest.Verified.UTC().Format("2006-01-02 15:04 UTC")
			} else {
				newest[d.Name] = "none yet"
			}
		}
	}
	for _, d := range b.Destinations {
		key := "the age key for " + d.Name
		if d.Restore != "" {
			key += " (" + d.Restore + ")"
		}
		sec.Rows = append(sec.Rows, []string{"3: off-site " + d.Name, backup.Where(d), newest[d.Name],
			"appliance backup restore --destination " + d.Name + " --identity KEYFILE --to DIR, with " + key})
	}
	sec.Items = []string{"Every off-site copy is encrypted; the keys (age identities) are never on the box. Without them nobody, not even you, can read a copy."}
	return sec
}

func orNotSet(s string) string {
	if s == "" {
		return notSet
	}
	return s
}

func lanAddr(cfg *config.Config) string {
	if len(cfg.LAN.Addresses) > 0 {
		return cfg.LAN.Addresses[0].Addr().String()
	}
	return "the box"
}

// WriteText writes the sheet as plain text (`appliance dr-sheet`).
func (s Sheet) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "DISASTER-RECOVERY SHEET: %s (made %s; print it again after each config change)\n", s.Site, s.Made.Format("2006-01-02 15:04 UTC"))
	for _, sec := range s.Sections {
		fmt.Fprintf(&b, "\n== %s ==\n", sec.Title)
		if sec.Intro != "" {
			b.WriteString(sec.Intro + "\n")
		}
		if len(sec.Rows) > 1 {
			for _, r := range sec.Rows[1:] {
				var parts []string
				for i, c := range r {
					if c != "" {
						parts = append(parts, sec.Rows[0][i]+": "+c)
					}
				}
				b.WriteString("- " + strings.Join(parts, "; ") + "\n")
			}
		}
		for _, it := range sec.Items {
			b.WriteString("- " + it + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
