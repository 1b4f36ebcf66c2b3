package setup

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/argon2"

	"github.com/officeedge/appliance/internal/config"
)

// goodAnswers are what an office with a fibre router and a 4G modem would type.
func goodAnswers() Answers {
	return Answers{Site: "Smith & Co", Password: "correct horse battery", LAN: "eth0",
		PrimaryInterface: "eth1", PrimaryMode: "static", PrimaryAddress: "198.51.100.2/29", PrimaryGateway: "198.51.100.1",
		BackupInterface: "eth2", BackupMode: "dhcp",
		PBXAddress: "192.168.1.20",
		Trunks:     []string{"192.0.2.0/28", " sip.provider.example ", ""},
		Admin:      []string{"203.0.113.7/32"}}
}

// TestRenderExample: the answers land in the example config, which keeps its comments,
// parses, and carries none of the example's made-up devices, keys or peers.
func TestRenderExample(t *testing.T) {
	out, err := Render(goodAnswers())
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("appliance.toml", out)
	if err != nil {
		t.Fatalf("the rendered config does not parse: %v", err)
	}
	p, b := c.Uplink.Primary, c.Uplink.Backup
	if c.Site != "Smith & Co" || c.LAN.Interface != "eth0" || p == nil || b == nil {
		t.Fatalf("site %q, lan %q, uplinks %v %v", c.Site, c.LAN.Interface, p, b)
	}
	if p.Name != "Primary line" || p.Interface != "eth1" || p.Mode != "static" || p.Address.String() != "198.51.100.2/29" || p.Gateway.String() != "198.51.100.1" {
		t.Errorf("primary uplink: %+v", p)
	}
	if b.Name != "Backup line" || b.Interface != "eth2" || b.Mode != "dhcp" || b.Address.IsValid() {
		t.Errorf("backup uplink: %+v", b)
	}
	if got := fmt.Sprint(c.LAN.Addresses); got != "[192.168.1.1/24 fd00:1::1/64]" {
		t.Errorf("LAN addresses %s, want the example's", got)
	}
	if c.PBX.Address.String() != "192.168.1.20" {
		t.Errorf("pbx %s", c.PBX.Address)
	}
	if len(c.SIPPeers) != 1 {
		t.Errorf("sip peers %v, want the trunk only", c.SIPPeers)
	}
	tr := c.SIPPeers["trunk"]
	if tr.Kind != "trunk" || fmt.Sprint(tr.Networks) != "[192.0.2.0/28]" || !slices.Equal(tr.Hosts, []string{"sip.provider.example"}) {
		t.Errorf("trunk peer %+v", tr)
	}
	if fmt.Sprint(c.Admin.Networks) != "[203.0.113.7/32]" {
		t.Errorf("admin networks %v", c.Admin.Networks)
	}
	if !argon2Matches(t, c.Web.PasswordHash, "correct horse battery") {
		t.Errorf("password_hash %q does not match the password typed", c.Web.PasswordHash)
	}
	if c.Backup.Enabled() || len(c.DHCP.Static) > 0 || len(c.DHCP.Provision) > 0 || len(c.VPN.Peers) > 0 {
		t.Errorf("example data left: backup %v, static leases %v, provisioning %v, vpn peers %v",
			c.Backup.Enabled(), c.DHCP.Static, c.DHCP.Provision, c.VPN.Peers)
	}
	text := string(out)
	for _, fake := range []string{"AKIAEXAMPLE", "age1", "ssh-ed25519 AAAA", "00:15:65", "80:5e:c0", "acme_trunk",
		"branch_office", "alice_mobile", "198.51.100.53", "203.0.113.200", "Example Office", "+44"} {
		if strings.Contains(text, fake) {
			t.Errorf("the rendered config still has the example's %q", fake)
		}
	}
	// The comments stay: every comment line of the example that is not about what was
	// dropped is still there, in order.
	var kept, all int
	for _, l := range strings.Split(string(config.Example()), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			all++
			if strings.Contains(text, l+"\n") {
				kept++
			}
		}
	}
	if kept < all*85/100 {
		t.Errorf("only %d of the example's %d comment lines are left", kept, all)
	}
	for _, want := range []string{"# Uplink health checks and failover.", "# The fixed line (FTTC/fibre): the office's normal way out.",
		"mode = \"static\"              # static or dhcp", "# password_hash = \"$argon2id$...\""} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered config lost %q", want)
		}
	}
}

// TestRenderDHCPNoBackup: a DHCP line drops the example's static address; no backup port
// means no [uplink.backup].
func TestRenderDHCPNoBackup(t *testing.T) {
	a := goodAnswers()
	a.PrimaryMode, a.PrimaryAddress, a.PrimaryGateway = "dhcp", "10.9.9.9/24", "10.9.9.1" // typed, then switched to DHCP
	a.BackupInterface = ""
	a.Admin = nil
	c, out := mustRender(t, a)
	if c.Uplink.Backup != nil || strings.Contains(string(out), "[uplink.backup]") {
		t.Errorf("a backup uplink without a port: %+v", c.Uplink.Backup)
	}
	if p := c.Uplink.Primary; p.Mode != "dhcp" || p.Address.IsValid() || p.Gateway.IsValid() {
		t.Errorf("primary %+v, want DHCP without an address", p)
	}
	if len(c.Admin.Networks) != 0 || len(c.Admin.Hosts) != 0 {
		t.Errorf("admin %v %v, want none", c.Admin.Networks, c.Admin.Hosts)
	}
}

// TestRenderHostile: quotes, brackets and comment signs are written as text, never as TOML;
// line breaks, control characters and huge answers are refused naming the field.
func TestRenderHostile(t *testing.T) {
	good, err := Render(goodAnswers())
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := keysOf(t, good)
	huge := strings.Repeat("A", 100<<10)

	accepted := []struct {
		name string
		mod  func(*Answers)
		site string
	}{
		{"quotes", func(a *Answers) { a.Site = `Smith "& Co" \ # [admin] networks = ["0.0.0.0/0"]` }, `Smith "& Co" \ # [admin] networks = ["0.0.0.0/0"]`},
		{"single quotes", func(a *Answers) { a.Site = `O'Brien''' """` }, `O'Brien''' """`},
		{"unicode", func(a *Answers) { a.Site = "Müller & Söhne ☎" }, "Müller & Söhne ☎"},
		{"interface with a quote", func(a *Answers) { a.PrimaryInterface = `eth1"]` }, "Smith & Co"}, // the kernel takes it
	}
	for _, x := range accepted {
		a := goodAnswers()
		x.mod(&a)
		out, err := Render(a)
		if err != nil {
			t.Errorf("%s: %v", x.name, err)
			continue
		}
		c, err := config.Parse("x.toml", out)
		if err != nil || c.Site != x.site {
			t.Errorf("%s: site %q (%v), want %q", x.name, c.Site, err, x.site)
		}
		if got := keysOf(t, out); !slices.Equal(got, wantKeys) {
			t.Errorf("%s: keys %v, want %v", x.name, got, wantKeys)
		}
	}

	refused := []struct {
		name, field string
		mod         func(*Answers)
	}{
		{"site with a line break", fieldSite, func(a *Answers) { a.Site = "Smith\"\n[admin]\nnetworks = [\"0.0.0.0/0\"]\n#" }},
		{"site with a NUL", fieldSite, func(a *Answers) { a.Site = "a\x00b" }},
		{"site of 100 KiB", fieldSite, func(a *Answers) { a.Site = huge }},
		{"site not UTF-8", fieldSite, func(a *Answers) { a.Site = "caf\xe9" }},
		{"password of 100 KiB", fieldPassword, func(a *Answers) { a.Password = huge }},
		{"interface of 100 KiB", fieldPriIf, func(a *Answers) { a.PrimaryInterface = huge }},
		{"address of 100 KiB", fieldPriAddr, func(a *Answers) { a.PrimaryAddress = huge }},
		{"gateway injection", fieldPriGw, func(a *Answers) { a.PrimaryGateway = "198.51.100.1\"\nallow_wide = true" }},
		{"backup gateway injection", fieldBakGw, func(a *Answers) {
			a.BackupMode, a.BackupAddress, a.BackupGateway = "static", "203.0.113.2/29", `203.0.113.1" # `
		}},
		{"pbx of 100 KiB", fieldPBX, func(a *Answers) { a.PBXAddress = huge }},
		{"trunk line of 100 KiB", fieldTrunks, func(a *Answers) { a.Trunks = []string{huge} }},
		{"trunk injection", fieldTrunks, func(a *Answers) { a.Trunks = []string{`192.0.2.0/28"] [admin] networks = ["0.0.0.0/0`} }},
		{"trunk line with a tab", fieldTrunks, func(a *Answers) { a.Trunks = []string{"sip.provider.example\tx"} }},
		{"too many trunk lines", fieldTrunks, func(a *Answers) {
			a.Trunks = nil
			for i := range 1000 {
				a.Trunks = append(a.Trunks, fmt.Sprintf("192.0.%d.%d", i/250, i%250))
			}
		}},
		{"admin injection", fieldAdmin, func(a *Answers) { a.Admin = []string{`x"]` + "\n" + `[sip_peers.evil]`} }},
		{"mode", fieldPriMode, func(a *Answers) { a.PrimaryMode = `static" ` }},
	}
	for _, x := range refused {
		a := goodAnswers()
		x.mod(&a)
		out, err := Render(a)
		if err == nil {
			t.Errorf("%s: accepted; keys %v", x.name, keysOf(t, out))
			continue
		}
		fe, ok := err.(FieldErrors)
		if !ok || !slices.ContainsFunc(fe, func(e FieldError) bool { return e.Field == x.field }) {
			t.Errorf("%s: %v, want an error on %s", x.name, err, x.field)
		}
		if len(err.Error()) > 4096 {
			t.Errorf("%s: the error is %d bytes: an answer must not be echoed whole", x.name, len(err.Error()))
		}
	}
}

// TestRenderErrorsNameFields: what config.Parse refuses comes back on the form's field
// that set it, in words naming the field.
func TestRenderErrorsNameFields(t *testing.T) {
	for _, x := range []struct {
		name, field, says string
		mod               func(*Answers)
	}{
		{"primary address", fieldPriAddr, "Main internet line: the box's address", func(a *Answers) { a.PrimaryAddress = "198.51.100.300/29" }},
		{"primary host bits", fieldPriGw, "outside the uplink's subnet", func(a *Answers) { a.PrimaryGateway = "10.0.0.1" }},
		{"backup address", fieldBakAddr, "Backup line", func(a *Answers) {
			a.BackupMode, a.BackupAddress, a.BackupGateway = "static", "not-an-address", "203.0.113.1"
		}},
		{"backup is the LAN port", fieldBakIf, "office network's port", func(a *Answers) { a.BackupInterface = "eth0" }},
		{"same port twice", fieldBakIf, "port of its own", func(a *Answers) { a.BackupInterface = "eth1" }},
		{"interface name", fieldPriIf, "Main internet line: port", func(a *Answers) { a.PrimaryInterface = "a-very-long-interface-name" }},
		{"pbx off the LAN", fieldPBX, "not on the LAN", func(a *Answers) { a.PBXAddress = "10.1.1.1" }},
		{"pbx in the DHCP pool", fieldPBX, "DHCP server would hand out", func(a *Answers) { a.PBXAddress = "192.168.1.150" }},
		{"trunk from anywhere", fieldTrunks, "Phone line provider", func(a *Answers) { a.Trunks = []string{"0.0.0.0/0"} }},
		{"trunk bad name", fieldTrunks, "not a domain name", func(a *Answers) { a.Trunks = []string{"not a name!"} }},
		{"no trunk", fieldTrunks, "provider", func(a *Answers) { a.Trunks = []string{" "} }},
		{"admin everyone", fieldAdmin, "Remote admin networks", func(a *Answers) { a.Admin = []string{"0.0.0.0/0"} }},
		{"admin host bits", fieldAdmin, "203.0.113.65/27", func(a *Answers) { a.Admin = []string{"203.0.113.65/27"} }},
		{"short password", fieldPassword, "at least 10", func(a *Answers) { a.Password = "short" }},
		{"site too long", fieldSite, "Office name", func(a *Answers) { a.Site = strings.Repeat("x", 65) }},
	} {
		a := goodAnswers()
		x.mod(&a)
		_, err := Render(a)
		fe, ok := err.(FieldErrors)
		if !ok || len(fe) == 0 {
			t.Errorf("%s: %v, want FieldErrors", x.name, err)
			continue
		}
		i := slices.IndexFunc(fe, func(e FieldError) bool { return e.Field == x.field })
		if i < 0 {
			t.Errorf("%s: %v, want one on %s", x.name, fe, x.field)
			continue
		}
		if !strings.Contains(fe[i].Error(), x.says) {
			t.Errorf("%s: %q does not say %q", x.name, fe[i].Error(), x.says)
		}
	}
}

// TestDocEditor: the editor keeps a setting's comment and finds no key in a comment or a
// string.
func TestDocEditor(t *testing.T) {
	d := parseDoc("# top\nsite = \"x\"\n\n# about a\n[a]\nk = \"v # not a comment\"  # the comment\n# n = 1\nz = 2\n")
	b, err := d.table("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.set("k", "new\"value"); err != nil {
		t.Fatal(err)
	}
	if err := b.set("n", 5); err != nil {
		t.Fatal(err)
	}
	want := "# top\nsite = \"x\"\n\n# about a\n[a]\nk = \"new\\\"value\"         # the comment\n# n = 1\nn = 5\nz = 2\n"
	if got := d.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	d.drop("a")
	if got := d.String(); got != "# top\nsite = \"x\"\n\n" {
		t.Errorf("after drop: %q", got)
	}
}

// keysOf lists every key path of a TOML text (tables and settings).
func keysOf(t *testing.T, text []byte) []string {
	t.Helper()
	md, err := toml.NewDecoder(bytes.NewReader(text)).Decode(&map[string]any{})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	var out []string
	for _, k := range md.Keys() {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}

// argon2Matches checks pw against an encoded argon2id hash ($argon2id$v=19$m=..,t=..,p=..$salt$key).
func argon2Matches(t *testing.T, encoded, pw string) bool {
	t.Helper()
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, it uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &it, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false
	}
	return subtle.ConstantTimeCompare(argon2.IDKey([]byte(pw), salt, it, m, p, uint32(len(key))), key) == 1
}

// TestRenderKeepsServingDHCP: when the setup state served the LAN's addresses, the first
// config serves them too (the PCs set up through it keep their leases); otherwise it serves none.
func TestRenderKeepsServingDHCP(t *testing.T) {
	for _, serves := range []bool{true, false} {
		a := goodAnswers()
		a.DHCP = serves
		if c, _ := mustRender(t, a); c.DHCP.Enabled != serves {
			t.Errorf("setup state served DHCP %v: the first config's [dhcp] enabled = %v", serves, c.DHCP.Enabled)
		}
	}
}

// mustRender renders a and parses the result, failing the test on either's error.
func mustRender(t *testing.T, a Answers) (*config.Config, []byte) {
	t.Helper()
	out, err := Render(a)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("appliance.toml", out)
	if err != nil {
		t.Fatal(err)
	}
	return c, out
}
