package setup

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/officeedge/appliance/internal/config"
	"github.com/officeedge/appliance/internal/web"
)

// Answers are what the setup page asks; everything else keeps the example config's
// defaults.
type Answers struct {
	Site, Password string // Password in clear; Render hashes it with web.HashPassword (argon2id)
	LAN            string
	// Modes are dhcp or static; address and gateway are used only when static.
	PrimaryInterface, PrimaryMode, PrimaryAddress, PrimaryGateway string
	BackupInterface, BackupMode, BackupAddress, BackupGateway     string // BackupInterface "" = none
	PBXAddress                                                    string
	Trunks                                                        []string // networks or host names of the SIP trunk provider
	Admin                                                         []string // admin networks (may be empty: no admin access from the uplinks)
	// DHCP turns the box's DHCP server on: the setup state served the LAN's addresses because
	// no other server answered, and the PCs that took them must keep getting them.
	DHCP bool
}

// The form's fields: the ids of the page's elements (a browser test depends on them).
const (
	fieldCode      = "code"
	fieldSite      = "site"
	fieldPassword  = "password"
	fieldPassword2 = "password2"
	fieldPriIf     = "primary-interface"
	fieldPriMode   = "primary-mode"
	fieldPriAddr   = "primary-address"
	fieldPriGw     = "primary-gateway"
	fieldBakIf     = "backup-interface"
	fieldBakMode   = "backup-mode"
	fieldBakAddr   = "backup-address"
	fieldBakGw     = "backup-gateway"
	fieldPBX       = "pbx"
	fieldTrunks    = "trunks"
	fieldAdmin     = "admin"
)

// fieldLabels are the fields as the page names them, in plain words.
var fieldLabels = map[string]string{
	fieldCode:      "Setup code",
	fieldSite:      "Office name",
	fieldPassword:  "Password",
	fieldPassword2: "Password (again)",
	fieldPriIf:     "Main internet line: port",
	fieldPriMode:   "Main internet line: how the box gets its address",
	fieldPriAddr:   "Main internet line: the box's address",
	fieldPriGw:     "Main internet line: gateway (the modem or router)",
	fieldBakIf:     "Backup line: port",
	fieldBakMode:   "Backup line: how the box gets its address",
	fieldBakAddr:   "Backup line: the box's address",
	fieldBakGw:     "Backup line: gateway (the modem or router)",
	fieldPBX:       "Phone system (PBX): address",
	fieldTrunks:    "Phone line provider (SIP trunk)",
	fieldAdmin:     "Remote admin networks",
}

// FieldError is one problem with an answer; Field is the form field's id ("" when the
// problem is in no field the page asks).
type FieldError struct {
	Field string `json:"field"`
	Msg   string `json:"msg"`
}

func (e FieldError) Error() string {
	if l := fieldLabels[e.Field]; l != "" {
		return l + ": " + e.Msg
	}
	return e.Msg
}

// FieldErrors are every problem found, in the form's order.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Limits on answers: nothing the page is given grows the config past what it checks.
const (
	minPassword = 10
	maxAnswer   = config.MaxTextLen // bytes in one answer or one line of a list
	maxPassword = 256               // bytes: argon2 hashes it whole
	maxListLen  = 32                // lines in the trunks' and the admins' lists
)

// uplink names of the first config (the example's FTTC and LTE say what the line is,
// which the page does not ask).
const (
	primaryName = "Primary line"
	backupName  = "Backup line"
)

// Render is the example config (`appliance example-config`, its comments kept) with the
// answers set, checked with config.Parse. Errors are FieldErrors naming the form's fields.
func Render(a Answers) ([]byte, error) {
	a = a.trimmed()
	if errs := a.check(); len(errs) > 0 {
		return nil, errs
	}
	hash, err := web.HashPassword(a.Password)
	if err != nil {
		return nil, FieldErrors{{fieldPassword, err.Error()}}
	}
	text, err := a.edit(string(config.Example()), hash)
	if err != nil {
		return nil, err
	}
	if _, err := config.Parse("appliance.toml", []byte(text)); err != nil {
		return nil, configErrors(err)
	}
	return []byte(text), nil
}

// trimmed drops the spaces around each answer and the empty lines of the lists.
func (a Answers) trimmed() Answers {
	for _, p := range []*string{&a.Site, &a.LAN, &a.PrimaryInterface, &a.PrimaryMode, &a.PrimaryAddress, &a.PrimaryGateway,
		&a.BackupInterface, &a.BackupMode, &a.BackupAddress, &a.BackupGateway, &a.PBXAddress} {
		*p = strings.TrimSpace(*p)
	}
	list := func(in []string) []string {
		var out []string
		for _, s := range in {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	a.Trunks, a.Admin = list(a.Trunks), list(a.Admin)
	if a.PrimaryMode == "" {
		a.PrimaryMode = "dhcp"
	}
	if a.BackupMode == "" {
		a.BackupMode = "dhcp"
	}
	return a
}

// check finds what needs no config to be wrong: sizes, control characters, the password,
// the modes and the ports.
func (a Answers) check() FieldErrors {
	var errs FieldErrors
	text := func(field, s string) {
		if msg := answerErr(s, maxAnswer); msg != "" {
			errs = append(errs, FieldError{field, msg})
		}
	}
	text(fieldSite, a.Site)
	switch n := utf8.RuneCountInString(a.Password); {
	case len(a.Password) > maxPassword:
		errs = append(errs, FieldError{fieldPassword, fmt.Sprintf("is too long (at most %d bytes)", maxPassword)})
	case n < minPassword:
		errs = append(errs, FieldError{fieldPassword, fmt.Sprintf("use at least %d characters (it has %d)", minPassword, n)})
	case !utf8.ValidString(a.Password):
		errs = append(errs, FieldError{fieldPassword, "is not valid text (UTF-8)"})
	}
	text("", a.LAN)
	uplink := func(ifField, iface, modeField, mode, addrField, addr, gwField, gw string) {
		text(ifField, iface)
		if iface == "" {
			errs = append(errs, FieldError{ifField, "choose the box's port the line is plugged into"})
		} else if iface == a.LAN && a.LAN != "" {
			errs = append(errs, FieldError{ifField, fmt.Sprintf("%s is the office network's port (the one this computer is on): choose the port the line is plugged into", iface)})
		}
		switch mode {
		case "dhcp":
		case "static":
			text(addrField, addr)
			text(gwField, gw)
			if addr == "" {
				errs = append(errs, FieldError{addrField, "a fixed address needs the box's address on the line with its prefix length, like 198.51.100.2/29"})
			}
			if gw == "" {
				errs = append(errs, FieldError{gwField, "a fixed address needs the gateway's address, like 198.51.100.1"})
			}
		default:
			errs = append(errs, FieldError{modeField, "choose automatic (DHCP) or fixed (static)"})
		}
	}
	uplink(fieldPriIf, a.PrimaryInterface, fieldPriMode, a.PrimaryMode, fieldPriAddr, a.PrimaryAddress, fieldPriGw, a.PrimaryGateway)
	if a.BackupInterface != "" {
		uplink(fieldBakIf, a.BackupInterface, fieldBakMode, a.BackupMode, fieldBakAddr, a.BackupAddress, fieldBakGw, a.BackupGateway)
		if a.BackupInterface == a.PrimaryInterface {
			errs = append(errs, FieldError{fieldBakIf, "is the main line's port too: the backup line needs a port of its own, or none"})
		}
	}
	text(fieldPBX, a.PBXAddress)
	list := func(field string, l []string) {
		if len(l) > maxListLen {
			errs = append(errs, FieldError{field, fmt.Sprintf("at most %d lines (it has %d)", maxListLen, len(l))})
			return
		}
		for _, s := range l {
			if msg := answerErr(s, maxAnswer); msg != "" {
				errs = append(errs, FieldError{field, "a line " + msg})
				return
			}
		}
	}
	list(fieldTrunks, a.Trunks)
	if len(a.Trunks) == 0 {
		errs = append(errs, FieldError{fieldTrunks, "give your provider's networks or host names (ask the provider): no other SIP from the internet reaches the PBX"})
	}
	list(fieldAdmin, a.Admin)
	return errs
}

// answerErr says why s can't be one answer, or "".
func answerErr(s string, limit int) string {
	if len(s) > limit {
		return fmt.Sprintf("is too long (%d bytes; at most %d)", len(s), limit)
	}
	if !utf8.ValidString(s) {
		return "is not valid text (UTF-8)"
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "has a line break, tab or other control character: write it on one line"
	}
	return ""
}

// splitPeers sorts a list into networks (addresses and networks) and host names.
func splitPeers(l []string) (networks, hosts []string) {
	networks, hosts = []string{}, []string{}
	for _, s := range l {
		if looksLikeAddress(s) {
			networks = append(networks, s)
		} else {
			hosts = append(hosts, s)
		}
	}
	return networks, hosts
}

// looksLikeAddress: a "/" or ":" or only digits and dots is meant as an address or a
// network, and is reported as one when it is not.
func looksLikeAddress(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return strings.ContainsAny(s, "/:") || strings.Trim(s, "0123456789.") == ""
}

// edit sets the answers in the example config text.
func (a Answers) edit(example, hash string) (string, error) {
	d := parseDoc(example)
	var err error
	set := func(table, key string, v any) {
		if err != nil {
			return
		}
		var b *tomlBlock
		if b, err = d.table(table); err == nil {
			err = b.set(key, v)
		}
	}
	block := func(table string) *tomlBlock {
		b, e := d.table(table)
		if err == nil {
			err = e
		}
		return b
	}
	d.blocks[0].insert(1, comments([]string{ // after the example's title line
		"Written by the box's setup page: the answers given there, and every other setting as in",
		"`appliance example-config` (which shows them all, with their defaults).",
	})...)
	set("", "site", a.Site)
	if a.LAN != "" {
		set("lan", "interface", a.LAN)
	}
	uplink := func(table, name, iface, mode, addr, gw string) {
		set(table, "name", name)
		set(table, "interface", iface)
		set(table, "mode", mode)
		if mode == "static" {
			set(table, "address", addr)
			set(table, "gateway", gw)
		} else if b := block(table); b != nil {
			b.unset("address")
			b.unset("gateway")
		}
	}
	uplink("uplink.primary", primaryName, a.PrimaryInterface, a.PrimaryMode, a.PrimaryAddress, a.PrimaryGateway)
	if a.BackupInterface == "" {
		d.drop("uplink.backup")
	} else {
		uplink("uplink.backup", backupName, a.BackupInterface, a.BackupMode, a.BackupAddress, a.BackupGateway)
	}
	set("pbx", "address", a.PBXAddress)
	if a.DHCP {
		set("dhcp", "enabled", true)
	}

	// One trunk peer in place of the example's trunk and office.
	if b := block("sip_peers.acme_trunk"); b != nil {
		b.rename("sip_peers.trunk")
	}
	d.drop("sip_peers.branch_office")
	nets, hosts := splitPeers(a.Trunks)
	set("sip_peers.trunk", "kind", "trunk")
	set("sip_peers.trunk", "networks", nets)
	if len(hosts) > 0 {
		set("sip_peers.trunk", "hosts", hosts)
	}
	nets, hosts = splitPeers(a.Admin)
	set("admin", "networks", nets)
	if len(hosts) > 0 {
		set("admin", "hosts", hosts)
	}
	set("web", "password_hash", hash)

	// The example's devices, backups and phones are made up: none of their MACs, keys,
	// buckets or addresses may reach a real box.
	d.drop("dhcp.static.pbx")
	d.drop("dhcp.provision")
	if b := block("dhcp"); b != nil {
		b.noteEnd("Static leases ([dhcp.static.NAME]) and phone provisioning ([[dhcp.provision]]):",
			"see `appliance example-config`.")
	}
	if b := block("dns.resolvers"); b != nil {
		b.unset("primary") // the example's resolver is a documentation address
	}
	d.drop("backup.pbx")
	d.drop("backup.destination")
	d.drop("backup.dr")
	if b := block("backup"); b != nil {
		b.commentOut()
		b.note("Off until set up: set dir, and add the PBX ([[backup.pbx]]) and the off-site",
			"destinations ([[backup.destination]]) as `appliance example-config` shows.")
	}
	d.drop("vpn.peers.alice_mobile")
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// configErrors turns config.Parse's errors into the form's.
func configErrors(err error) FieldErrors {
	var ces config.Errors
	if !errors.As(err, &ces) {
		return FieldErrors{{"", err.Error()}}
	}
	out := make(FieldErrors, 0, len(ces))
	for _, e := range ces {
		out = append(out, problem(e.Field, e.Msg))
	}
	return out
}

// configFields map a config field (and the fields under it) to the form's field that set
// it, most specific first.
var configFields = []struct{ config, form string }{
	{"site", fieldSite},
	{"web.password_hash", fieldPassword},
	{"uplink.primary.mode", fieldPriMode},
	{"uplink.primary.address", fieldPriAddr},
	{"uplink.primary.gateway", fieldPriGw},
	{"uplink.primary", fieldPriIf},
	{"uplink.backup.mode", fieldBakMode},
	{"uplink.backup.address", fieldBakAddr},
	{"uplink.backup.gateway", fieldBakGw},
	{"uplink.backup", fieldBakIf},
	{"uplink", fieldPriIf},
	{"pbx", fieldPBX},
	{"sip_peers", fieldTrunks},
	{"admin", fieldAdmin},
}

// problem is one config error as the form shows it.
func problem(field, msg string) FieldError {
	if field == "dhcp.pool" && strings.Contains(msg, "PBX") {
		// DHCP is off in the first config, but its pool is kept for when it is switched on.
		return FieldError{fieldPBX, "is inside the range of addresses the box's DHCP server would hand out (" +
			dhcpPool() + "): give the PBX an address outside it"}
	}
	for _, m := range configFields {
		if field == m.config || strings.HasPrefix(field, m.config+".") || strings.HasPrefix(field, m.config+"[") {
			return FieldError{m.form, msg}
		}
	}
	if field != "" {
		msg = field + ": " + msg
	}
	return FieldError{"", msg}
}

// dhcpPool is the example's DHCP pool, as written there.
func dhcpPool() string {
	c, err := config.Parse("example.toml", config.Example())
	if err != nil {
		return "the [dhcp] pool"
	}
	return c.DHCP.Pool.String()
}
