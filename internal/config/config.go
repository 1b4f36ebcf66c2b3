// Package config loads and validates the appliance's TOML site configuration.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config describes one site: its LAN, its two uplinks, its PBX and who may reach what.
type Config struct {
	Site      string              `toml:"site"`
	Timezone  string              `toml:"timezone"` // the site's zone for times shown to people (site.go)
	LAN       LAN                 `toml:"lan"`
	Uplink    Uplinks             `toml:"uplink"`
	PBX       PBX                 `toml:"pbx"`
	SIPPeers  map[string]*SIPPeer `toml:"sip_peers"`
	Admin     Admin               `toml:"admin"`
	Forward   map[string]*Forward `toml:"forward"`
	WAN       WAN                 `toml:"wan"`
	SIPGuard  SIPGuard            `toml:"sipguard"`
	Notify    Notify              `toml:"notify"`
	HAL       HAL                 `toml:"hal"`
	Web       Web                 `toml:"web"`
	Blocklist Blocklist           `toml:"blocklist"`
	CrowdSec  CrowdSec            `toml:"crowdsec"`
	Backup    Backup              `toml:"backup"`
	DNS       DNS                 `toml:"dns"`
	Time      Time                `toml:"time"`
	DHCP      DHCP                `toml:"dhcp"`
	RA        RA                  `toml:"ra"`
	VPN       VPN                 `toml:"vpn"`
	Relay     Relay               `toml:"relay"` // relay.go: the voice relay (issue 22)
	Voice     Voice               `toml:"voice"` // voice.go: shaping and call quality (issue 23)

	// Warnings are said on every start: things that are allowed but risky.
	Warnings []string `toml:"-"`

	loc *time.Location // Timezone, loaded by validateSite
}

// LAN is the office side of the box.
type LAN struct {
	Interface string   `toml:"interface"`
	Addresses []Prefix `toml:"addresses"` // the box's own addresses, with the subnet's prefix length
}

// Subnets are the LAN's networks, derived from the box's addresses.
func (l LAN) Subnets() []Prefix {
	var out []Prefix
	for _, a := range l.Addresses {
		out = append(out, Prefix{a.Masked()})
	}
	return out
}

// Uplinks are the fixed line and the modem.
type Uplinks struct {
	Primary *Uplink `toml:"primary"`
	Backup  *Uplink `toml:"backup"`
}

// All returns the configured uplinks, primary first.
func (u Uplinks) All() []*Uplink {
	var out []*Uplink
	for _, x := range []*Uplink{u.Primary, u.Backup} {
		if x != nil {
			out = append(out, x)
		}
	}
	return out
}

// Uplink is one way to the internet.
type Uplink struct {
	Name      string   `toml:"name"`      // shown to people: "FTTC", "LTE"
	Interface string   `toml:"interface"` // e.g. eth1, wwan0, usb0
	Mode      AddrMode `toml:"mode"`      // static or dhcp
	Address   Prefix   `toml:"address"`   // static: the box's address with prefix length
	Gateway   Addr     `toml:"gateway"`
	Address6  Prefix   `toml:"address6"` // optional static IPv6
	Gateway6  Addr     `toml:"gateway6"`
	Role      string   `toml:"-"` // "primary" or "backup"
	// DataBudget is the line's monthly data allowance (0: no cap), counted from the
	// interface's bytes in and out and renewed on BillingDay (1-31; the last day in shorter months).
	DataBudget Bytes `toml:"data_budget"`
	BillingDay int   `toml:"billing_day"`
	// Upload is the line's upload rate for the shaper (rate.go, package shaper): the box
	// shapes its egress just under it so the queue forms in the box, voice first. "auto"
	// follows the line between UploadMin and UploadMax.
	Upload    Rate `toml:"upload"`
	UploadMin Rate `toml:"upload_min"`
	UploadMax Rate `toml:"upload_max"`
}

// PBX is the office's IP-PBX on the LAN and the services forwarded to it.
type PBX struct {
	Address              Addr       `toml:"address"`
	Address6             Addr       `toml:"address6"`
	SIPPort              Port       `toml:"sip_port"`
	SIPTransports        []Protocol `toml:"sip_transports"`
	SIPTLSPort           Port       `toml:"sip_tls_port"`
	TunnelPort           Port       `toml:"tunnel_port"`
	TunnelFrom           Source     `toml:"tunnel_from"`
	RTPPorts             PortRange  `toml:"rtp_ports"`
	RTPFrom              Source     `toml:"rtp_from"`
	WebPorts             []Port     `toml:"web_ports"`
	WebFrom              Source     `toml:"web_from"`
	AllowSIPFromAnywhere bool       `toml:"allow_sip_from_anywhere"`
	// SIPWidest4 and SIPWidest6 are prefix lengths: all SIP peers' networks together may
	// cover at most as many addresses as one network this wide, unless SIP is allowed from
	// anywhere (two /1s are the whole internet as surely as a /0 is).
	SIPWidest4 int `toml:"sip_widest4"`
	SIPWidest6 int `toml:"sip_widest6"`
}

// SIPPeer is a named group of networks allowed to send SIP to the PBX.
type SIPPeer struct {
	Kind     string   `toml:"kind"` // trunk or office
	Networks []Prefix `toml:"networks"`
	// Hosts are DNS names whose addresses are trusted like Networks while they resolve to
	// them (a provider's host name, a home worker's dynamic-DNS name); a trunk's names are
	// also looked up as SIP SRV records.
	Hosts []string `toml:"hosts"`
	// Options is where the wan part sends SIP OPTIONS to check the trunk through the active
	// uplink ("192.0.2.10:5060"); empty: not checked.
	Options string `toml:"options"`
}

// Admin says who may manage the box.
type Admin struct {
	Networks []Prefix `toml:"networks"`
	Hosts    []string `toml:"hosts"` // DNS names of admins' dynamic addresses, trusted like Networks
	SSHPort  Port     `toml:"ssh_port"`
	WebPorts []Port   `toml:"web_ports"`
	// Widest4 and Widest6 are prefix lengths: the admin networks together may cover at most
	// as many addresses as one network this wide, unless AllowWide says otherwise.
	Widest4 int `toml:"widest4"`
	Widest6 int `toml:"widest6"`
	// AllowWide lets the admin networks be wider than that (never the whole internet); it
	// is warned about at every start.
	AllowWide bool `toml:"allow_wide"`
}

// Forward is an extra port forward from the uplinks to a LAN host.
type Forward struct {
	Protocol Protocol  `toml:"protocol"`
	Ports    PortRange `toml:"ports"`
	To       Addr      `toml:"to"`
	ToPort   Port      `toml:"to_port"` // 0: same as the first of Ports
	From     []Prefix  `toml:"from"`
}

// section is a part's own block of settings, in a file of its own in this package: it fills
// in its defaults and checks itself, so parts grow without touching each other.
type section interface {
	setDefaults(md *toml.MetaData)
	check(c *Config, v *validator)
}

func (c *Config) sections() []section {
	return []section{&c.WAN, &c.SIPGuard, &c.Notify, &c.HAL, &c.Web, &c.Blocklist, &c.Backup, &c.CrowdSec, &c.DNS, &c.Time, &c.DHCP, &c.RA, &c.VPN, &c.Relay, &c.Voice, &c.Voice.Calls, &c.Voice.Flood}
}

//go:embed example.toml
var example []byte

// Example is a complete, commented configuration that passes validation.
func Example() []byte { return example }

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit, not the whole file: a wrong path (a disk image, a log)
	// or /dev/zero must not fill the box's memory before it is refused.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, tooBig(path, fileSize(f))
	}
	return Parse(path, data)
}

// tooBig is the error for a file over MaxFileSize; size is -1 when it is not known.
func tooBig(name string, size int64) error {
	what := "more than 1 MiB"
	if size >= 0 {
		what = fmt.Sprintf("%d bytes", size)
	}
	return Errors{{File: name, Msg: fmt.Sprintf("the file is %s; a config may be at most 1 MiB (%d bytes): is this the right file?", what, MaxFileSize)}}
}

// fileSize is f's size, or -1 when it has none (a pipe, a device).
func fileSize(f *os.File) int64 {
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		return st.Size()
	}
	return -1
}

// Parse decodes and validates data; name is the file name used in error messages.
// Every problem found is returned, each with its file, line, column and field.
func Parse(name string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, tooBig(name, int64(len(data)))
	}
	// First into a generic tree: syntax errors come out here, and the tree is checked
	// against Config's types so that every type error is reported, in plain words.
	var tree map[string]any
	md, err := toml.Decode(string(data), &tree)
	if err != nil {
		return nil, decodeErr(name, err, nil)
	}
	v := validator{file: name, md: &md, data: string(data)}
	if !checkTypes(&v, tree) {
		return nil, v.errs
	}
	var c Config
	md, err = toml.Decode(string(data), &c)
	if err != nil {
		return nil, decodeErr(name, err, &v)
	}
	v.md = &md
	v.unknownKeys()
	c.applyDefaults(&md)
	c.validate(&v)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return &c, nil
}

// unknownKeys reports every key the file has and the target does not: a typo must not
// silently open or close a door. An unknown section is reported once, not once more for
// each key in it.
func (v *validator) unknownKeys() {
	unknown := map[string]bool{}
	for _, k := range v.md.Undecoded() {
		unknown[k.String()] = true
		if len(k) > 1 && unknown[k[:len(k)-1].String()] {
			continue
		}
		v.errf(k.String(), "unknown setting %q", k[len(k)-1])
	}
}

// File is another TOML file read by this package's rules (the relay's relay.toml, package
// relay): its own checks report through Errf, each problem with file, line, column and field.
type File struct{ v validator }

// DecodeFile decodes data into into: a file over MaxFileSize, a syntax or type error is the
// error; unknown keys are reported in File.Err with the checks that follow.
func DecodeFile(name string, data []byte, into any) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, tooBig(name, int64(len(data)))
	}
	md, err := toml.Decode(string(data), into)
	if err != nil {
		return nil, decodeErr(name, err, nil)
	}
	f := &File{v: validator{file: name, md: &md, data: string(data)}}
	f.v.unknownKeys()
	return f, nil
}

// Errf records a problem with the field at path (dotted, as written in the file).
func (f *File) Errf(path, format string, args ...any) { f.v.errf(path, format, args...) }

// IsDefined reports whether the file sets key.
func (f *File) IsDefined(key ...string) bool { return f.v.md.IsDefined(key...) }

// Err is every problem recorded, in file order (Errors), or nil.
func (f *File) Err() error {
	if len(f.v.errs) == 0 {
		return nil
	}
	return f.v.errs
}

// decodeErr turns the library's error into this package's form. Type errors are caught by
// checkTypes first; one it missed still gets its line, and its column when v knows it.
func decodeErr(name string, err error, v *validator) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return Errors{{File: name, Line: pe.Position.Line, Col: pe.Position.Col, Field: pe.LastKey, Msg: unwrapMsg(pe)}}
	}
	if m := plainErrRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		col := 0
		if v != nil {
			_, col = v.position(m[2])
		}
		return Errors{{File: name, Line: line, Col: col, Field: m[2], Msg: m[3]}}
	}
	return Errors{{File: name, Msg: err.Error()}}
}

var plainErrRE = regexp.MustCompile(`^toml: line (\d+) \(last key "(.*?)"\): (.*)$`)

func unwrapMsg(pe toml.ParseError) string {
	if pe.Usage != "" {
		return pe.Message
	}
	return strings.TrimPrefix(pe.Message, "toml: ")
}

// Error is one problem in a configuration file.
type Error struct {
	File      string
	Line, Col int
	Field     string
	Msg       string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Col > 0 {
		fmt.Fprintf(&b, ":%d", e.Col)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are all the problems found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

type validator struct {
	file string
	md   *toml.MetaData
	data string
	errs Errors
}

// errf records a problem with the field at path (dotted, as written in the file).
func (v *validator) errf(path string, format string, args ...any) {
	line, col := v.position(path)
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Col: col, Field: path, Msg: fmt.Sprintf(format, args...)})
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
}

// position finds where a key was written. BurntSushi/toml records every key's position but
// only exposes it inside its own parse errors, so it is read from MetaData by reflection;
// TestPositionOfSemanticErrors guards this against a library upgrade. A field that is not in
// the file (a missing required one) falls back to its closest written parent.
func (v *validator) position(path string) (line, col int) {
	ki := reflect.ValueOf(v.md).Elem().FieldByName("keyInfo")
	if !ki.IsValid() || ki.Kind() != reflect.Map {
		return 0, 0
	}
	for p := path; p != ""; {
		e := ki.MapIndex(reflect.ValueOf(p))
		if e.IsValid() {
			pos := e.FieldByName("pos")
			line := int(pos.FieldByName("Line").Int())
			start := int(pos.FieldByName("Start").Int())
			if line > 0 {
				return line, start - strings.LastIndexByte(v.data[:min(start, len(v.data))], '\n')
			}
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0, 0
}
